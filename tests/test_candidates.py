"""Candidate enumeration, attention blocks (candidates.py) and BIO tags (tags.py)."""

import random

import numpy
import pytest

from spacy_spandec.candidates import (
    attention_blocks,
    count_candidates,
    enumerate_candidates,
    max_window_length,
    near_gold,
)
from spacy_spandec.tags import bio_to_spans, spans_to_bio


def brute_force_candidates(lengths, max_len):
    return [
        (doc_id, start, end)
        for doc_id, length in enumerate(lengths)
        for start in range(length)
        for end in range(start + 1, min(start + max_len, length) + 1)
    ]


@pytest.mark.parametrize("max_len", [1, 2, 3, 8])
@pytest.mark.parametrize("length", [0, 1, 2, 5, 8, 9, 30])
def test_count_candidates_matches_enumeration(length, max_len):
    cands = enumerate_candidates([length], max_len)
    assert len(cands) == count_candidates(length, max_len)
    assert len(cands) == len(brute_force_candidates([length], max_len))


@pytest.mark.parametrize("max_len", [1, 3, 8])
def test_enumeration_order_and_values(max_len):
    lengths = [4, 0, 1, 11, 0, 7]
    cands = enumerate_candidates(lengths, max_len)
    got = list(zip(cands.doc_ids.tolist(), cands.starts.tolist(), cands.ends.tolist()))
    # Doc-major, then start, then width: exactly the nested-loop order.
    assert got == brute_force_candidates(lengths, max_len)
    for arr in (cands.doc_ids, cands.starts, cands.ends):
        assert arr.dtype == numpy.int64


def test_enumeration_respects_max_span_length():
    cands = enumerate_candidates([20], 5)
    widths = cands.ends - cands.starts
    assert widths.min() == 1
    assert widths.max() == 5
    assert (cands.ends <= 20).all()
    # Every width 1..5 appears at every start that can hold it.
    for width in range(1, 6):
        assert int((widths == width).sum()) == 20 - width + 1


def test_enumeration_empty_docs():
    for lengths in ([], [0], [0, 0, 0]):
        cands = enumerate_candidates(lengths, 4)
        assert len(cands) == 0
        assert cands.starts.shape == (0,) and cands.ends.shape == (0,)
    assert count_candidates(0, 4) == 0
    # Empty docs in between do not shift the doc ids of the others.
    cands = enumerate_candidates([0, 2, 0, 1], 4)
    assert cands.doc_ids.tolist() == [1, 1, 1, 3]


def test_enumeration_rejects_bad_max_len():
    with pytest.raises(ValueError, match="max_span_length"):
        enumerate_candidates([3], 0)


def test_near_gold_matches_the_definition():
    """A span is near gold iff it overlaps a gold span or starts where one ends
    or ends where one starts, inside its own doc (never across docs)."""
    rng = random.Random(0)
    for _ in range(50):
        lengths = [rng.randint(0, 12) for _ in range(rng.randint(1, 4))]
        gold = []
        for doc_id, length in enumerate(lengths):
            for _ in range(rng.randint(0, 2)):
                if length:
                    start = rng.randrange(length)
                    gold.append((doc_id, start, rng.randint(start + 1, length)))
        offsets = numpy.concatenate([[0], numpy.cumsum(lengths)[:-1]]).astype(int)
        tokens = numpy.zeros(sum(lengths), dtype="float32")
        for doc_id, start, end in gold:
            tokens[offsets[doc_id] + start : offsets[doc_id] + end] = 1.0
        cands = enumerate_candidates(lengths, 4)
        near = near_gold(tokens, numpy.array(lengths), cands.doc_ids, cands.starts, cands.ends)
        expected = [
            any(d == doc_id and start <= g_end and end >= g_start for d, g_start, g_end in gold)
            for doc_id, start, end in zip(cands.doc_ids, cands.starts, cands.ends)
        ]
        assert near.tolist() == expected


@pytest.mark.parametrize(
    "lengths,max_len,block_size,context",
    [
        ([5, 0, 40, 1, 300], 4, 16, 8),
        ([64, 65, 130], 8, 64, 64),
        ([3, 17, 33], 3, 1, 0),
        ([100], 8, 7, 20),
    ],
)
def test_attention_blocks_cover_every_span_window(lengths, max_len, block_size, context):
    cands = enumerate_candidates(lengths, max_len)
    blocks = attention_blocks(lengths, max_len, block_size, context)
    block_ids = blocks.block_of(cands, block_size)
    assert len(blocks) == sum(-(-n // block_size) for n in lengths)
    assert (blocks.window_lengths <= max_window_length(max_len, block_size, context)).all()
    assert (blocks.window_starts >= 0).all()
    for doc_id, start, end, block in zip(cands.doc_ids, cands.starts, cands.ends, block_ids):
        assert blocks.doc_ids[block] == doc_id
        assert blocks.block_starts[block] <= start < blocks.block_starts[block] + block_size
        lo = blocks.window_starts[block]
        hi = lo + blocks.window_lengths[block]
        # The window holds the span plus `context` tokens each side (clipped to the doc).
        assert lo <= max(start - context, 0)
        assert hi >= min(end + context, lengths[doc_id])
        assert hi <= lengths[doc_id]


def test_single_block_doc_sees_whole_doc():
    blocks = attention_blocks([10, 16], 4, 16, 2)
    assert blocks.window_starts.tolist() == [0, 0]
    assert blocks.window_lengths.tolist() == [10, 16]
    assert blocks.first_block.tolist() == [0, 1]


def test_attention_blocks_empty_docs():
    blocks = attention_blocks([0, 3, 0], 2, 4, 1)
    assert len(blocks) == 1
    assert blocks.first_block.tolist() == [0, 0, 1]
    assert len(attention_blocks([], 2, 4, 1)) == 0


# BIO tags -----------------------------------------------------------------------


def test_spans_to_bio_simple():
    tags = spans_to_bio(6, [(0, 2, "PER"), (3, 4, "LOC")])
    assert tags == ["B-PER", "I-PER", "O", "B-LOC", "O", "O"]


def test_bio_round_trip_random():
    rng = random.Random(0)
    for _ in range(200):
        n = rng.randint(0, 15)
        spans, pos = [], 0
        while pos < n:
            pos += rng.randint(0, 3)
            width = rng.randint(1, 4)
            if pos + width > n:
                break
            spans.append((pos, pos + width, rng.choice(["PER", "ORG", "LOC"])))
            pos += width
        tags = spans_to_bio(n, spans)
        assert len(tags) == n
        assert bio_to_spans(tags) == spans


def test_bio_adjacent_same_label_spans_stay_separate():
    spans = [(0, 1, "PER"), (1, 3, "PER")]
    assert bio_to_spans(spans_to_bio(3, spans)) == spans


def test_iob1_repair():
    tags = ["I-PER", "I-PER", "O", "I-LOC", "I-ORG", "B-ORG", "I-ORG", "-", "I-MISC"]
    assert bio_to_spans(tags) == [
        (0, 2, "PER"),
        (3, 4, "LOC"),
        (4, 5, "ORG"),
        (5, 7, "ORG"),
        (8, 9, "MISC"),
    ]


def test_bio_to_spans_rejects_bad_tag():
    with pytest.raises(ValueError, match="X-PER"):
        bio_to_spans(["O", "X-PER"])


def test_spans_to_bio_overlap_error():
    with pytest.raises(ValueError, match="overlap"):
        spans_to_bio(5, [(0, 3, "ORG"), (1, 2, "LOC")])


def test_spans_to_bio_out_of_range():
    with pytest.raises(ValueError, match="outside"):
        spans_to_bio(3, [(2, 4, "PER")])
    with pytest.raises(ValueError, match="outside"):
        spans_to_bio(3, [(1, 1, "PER")])


def brute_force_blocks(lengths, max_len, block_size, context):
    rows, first, n = [], [], 0
    for doc_id, length in enumerate(lengths):
        first.append(n)
        for start in range(0, length, block_size):
            lo = max(start - context, 0)
            hi = min(start + block_size + max_len - 1 + context, length)
            rows.append((doc_id, start, lo, hi - lo))
            n += 1
    return rows, first


def test_attention_blocks_match_the_nested_loop():
    rng = random.Random(0)
    for _ in range(200):
        lengths = [
            rng.choice([0, 1, 5, 63, 64, 65, 200, rng.randint(0, 300)])
            for _ in range(rng.randint(0, 9))
        ]
        max_len, block_size, context = rng.randint(1, 9), rng.randint(1, 70), rng.randint(0, 70)
        blocks = attention_blocks(lengths, max_len, block_size, context)
        rows, first = brute_force_blocks(lengths, max_len, block_size, context)
        got = list(
            zip(
                blocks.doc_ids.tolist(),
                blocks.block_starts.tolist(),
                blocks.window_starts.tolist(),
                blocks.window_lengths.tolist(),
            )
        )
        assert got == rows and blocks.first_block.tolist() == first
        assert blocks.window_lengths.dtype == numpy.int64
