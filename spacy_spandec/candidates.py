"""Candidate spans and the attention blocks that bound their context.

Every span (i, j) with j - i < max_span_length inside one doc is a candidate.
The same enumeration serves the model (what to decode), the component (which
gold spans are reachable) and the benchmark (how many spans there are).
"""
from dataclasses import dataclass
from typing import Sequence

import numpy


@dataclass
class Candidates:
    """Candidate spans of a batch, in doc-major, start-major, width order.

    `starts` and `ends` are token offsets inside their doc, `ends` exclusive.
    """

    doc_ids: numpy.ndarray
    starts: numpy.ndarray
    ends: numpy.ndarray

    def __len__(self) -> int:
        return int(self.starts.shape[0])

    def select(self, mask: numpy.ndarray) -> "Candidates":
        return Candidates(self.doc_ids[mask], self.starts[mask], self.ends[mask])

    def without_space_boundaries(self, is_space: numpy.ndarray, offsets: numpy.ndarray) -> "Candidates":
        """Drop spans that start or end on a whitespace token, as spaCy's
        `ner` does: an entity never begins or ends with "\n" or "  "."""
        if not is_space.any():
            return self
        first = offsets[self.doc_ids] + self.starts
        last = offsets[self.doc_ids] + self.ends - 1
        return self.select(~(is_space[first] | is_space[last]))


def enumerate_candidates(lengths: Sequence[int], max_span_length: int) -> Candidates:
    """All spans of at most `max_span_length` tokens of every doc, vectorized."""
    if max_span_length < 1:
        raise ValueError(f"max_span_length must be >= 1, got {max_span_length}.")
    doc_ids, starts, ends = [], [], []
    widths = numpy.arange(1, max_span_length + 1, dtype="int64")
    for doc_id, length in enumerate(lengths):
        if length == 0:
            continue
        start = numpy.arange(length, dtype="int64")[:, None]
        end = start + widths[None, :]
        valid = end <= length
        n = int(valid.sum())
        starts.append(numpy.broadcast_to(start, end.shape)[valid])
        ends.append(end[valid])
        doc_ids.append(numpy.full(n, doc_id, dtype="int64"))
    if not starts:
        empty = numpy.zeros((0,), dtype="int64")
        return Candidates(empty, empty.copy(), empty.copy())
    return Candidates(
        numpy.concatenate(doc_ids), numpy.concatenate(starts), numpy.concatenate(ends)
    )


def count_candidates(length: int, max_span_length: int) -> int:
    """Number of candidates of a doc of `length` tokens, without building them."""
    m = min(length, max_span_length)
    return m * length - m * (m - 1) // 2


@dataclass
class AttentionBlocks:
    """Blocks of span starts and the token window the spans of each block see.

    Spans whose start falls in block b attend to tokens
    [window_starts[b], window_starts[b] + window_lengths[b]) of doc doc_ids[b]:
    the block plus `context_window` tokens on either side. A doc no longer
    than one block is a single block that sees the whole doc, so sentences
    get the paper's full attention while long docs cost linear time.
    """

    doc_ids: numpy.ndarray
    block_starts: numpy.ndarray
    window_starts: numpy.ndarray
    window_lengths: numpy.ndarray
    first_block: numpy.ndarray  # per doc: index of its first block

    def __len__(self) -> int:
        return int(self.doc_ids.shape[0])

    def block_of(self, cands: Candidates, block_size: int) -> numpy.ndarray:
        """The block index of every candidate span."""
        return self.first_block[cands.doc_ids] + cands.starts // block_size


def attention_blocks(
    lengths: Sequence[int], max_span_length: int, block_size: int, context_window: int
) -> AttentionBlocks:
    doc_ids, block_starts, win_starts, win_lengths, first = [], [], [], [], []
    n_blocks = 0
    for doc_id, length in enumerate(lengths):
        first.append(n_blocks)
        if length == 0:
            continue
        starts = numpy.arange(0, length, block_size, dtype="int64")
        lo = numpy.maximum(starts - context_window, 0)
        hi = numpy.minimum(
            starts + block_size + max_span_length - 1 + context_window, length
        )
        doc_ids.append(numpy.full(starts.shape[0], doc_id, dtype="int64"))
        block_starts.append(starts)
        win_starts.append(lo)
        win_lengths.append(hi - lo)
        n_blocks += starts.shape[0]
    if not doc_ids:
        empty = numpy.zeros((0,), dtype="int64")
        return AttentionBlocks(
            empty, empty.copy(), empty.copy(), empty.copy(), numpy.asarray(first, dtype="int64")
        )
    return AttentionBlocks(
        numpy.concatenate(doc_ids),
        numpy.concatenate(block_starts),
        numpy.concatenate(win_starts),
        numpy.concatenate(win_lengths),
        numpy.asarray(first, dtype="int64"),
    )


def max_window_length(max_span_length: int, block_size: int, context_window: int) -> int:
    """The longest token window a block can have: the size of the position table."""
    return block_size + max_span_length - 1 + 2 * context_window
