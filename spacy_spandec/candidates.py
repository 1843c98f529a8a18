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

    def without_space_boundaries(
        self, is_space: numpy.ndarray, offsets: numpy.ndarray
    ) -> "Candidates":
        """Drop spans that start or end on a whitespace token, as spaCy's
        `ner` does: an entity never begins or ends with "\n" or "  "."""
        if not is_space.any():
            return self
        first = offsets[self.doc_ids] + self.starts
        last = offsets[self.doc_ids] + self.ends - 1
        return self.select(~(is_space[first] | is_space[last]))


def enumerate_candidates(lengths: Sequence[int], max_span_length: int) -> Candidates:
    """All spans of at most `max_span_length` tokens of every doc, vectorized
    over the whole batch (no per-doc Python loop: at inference this runs once
    per batch of short sentences, where per-doc overhead would dominate)."""
    if max_span_length < 1:
        raise ValueError(f"max_span_length must be >= 1, got {max_span_length}.")
    lengths = numpy.asarray(lengths, dtype="int64").reshape(-1)
    n_tokens = int(lengths.sum())
    # Per token of the batch: its doc and its offset inside the doc.
    doc_of_token = numpy.repeat(numpy.arange(lengths.shape[0], dtype="int64"), lengths)
    first_token = numpy.cumsum(lengths) - lengths
    starts = numpy.arange(n_tokens, dtype="int64") - first_token[doc_of_token]
    widths = numpy.arange(1, max_span_length + 1, dtype="int64")
    ends = starts[:, None] + widths[None, :]  # (tokens, widths): doc-, start-, width-major
    valid = ends <= lengths[doc_of_token][:, None]
    return Candidates(
        numpy.broadcast_to(doc_of_token[:, None], ends.shape)[valid],
        numpy.broadcast_to(starts[:, None], ends.shape)[valid],
        ends[valid],
    )


def near_gold(
    tokens: numpy.ndarray,
    lengths: numpy.ndarray,
    doc_ids: numpy.ndarray,
    starts: numpy.ndarray,
    ends: numpy.ndarray,
) -> numpy.ndarray:
    """Whether each span overlaps or touches a gold span: some gold token
    (`tokens`: the batch's entity/O flags) lies in [start - 1, end] of its
    doc. Counted with a prefix sum, so it costs one pass over the spans."""
    lengths = numpy.asarray(lengths, dtype="int64")
    offsets = numpy.concatenate([[0], numpy.cumsum(lengths)[:-1]]).astype("int64")
    counts = numpy.concatenate([[0], numpy.cumsum(tokens > 0)])
    lo = offsets[doc_ids] + numpy.maximum(starts - 1, 0)
    hi = offsets[doc_ids] + numpy.minimum(ends + 1, lengths[doc_ids])
    return counts[hi] > counts[lo]


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
    """The blocks of every doc, vectorized over the batch like the candidates."""
    lengths = numpy.asarray(lengths, dtype="int64").reshape(-1)
    n_blocks = -(-lengths // block_size)  # ceil; 0 for an empty doc
    first = numpy.cumsum(n_blocks) - n_blocks
    doc_ids = numpy.repeat(numpy.arange(lengths.shape[0], dtype="int64"), n_blocks)
    block_starts = (numpy.arange(int(n_blocks.sum()), dtype="int64") - first[doc_ids]) * block_size
    lo = numpy.maximum(block_starts - context_window, 0)
    hi = numpy.minimum(
        block_starts + block_size + max_span_length - 1 + context_window, lengths[doc_ids]
    )
    return AttentionBlocks(doc_ids, block_starts, lo, hi - lo, first)


def max_window_length(max_span_length: int, block_size: int, context_window: int) -> int:
    """The longest token window a block can have: the size of the position table."""
    return block_size + max_span_length - 1 + 2 * context_window
