"""The span decoder's attention kernels, apart from what a query means.

Every span has two queries (start, end); each attends to K = V = [its block's
text window, its own pair]. Two kernels compute that softmax, with the same
result up to float rounding:

* fused: one masked `scaled_dot_product_attention` call over every block
  window of the batch laid end to end and every span pair, the mask keeping
  each query to its own window and pair. One kernel instead of dozens of
  small ops, which is what an SF-pruned batch of sentences needs; its work
  grows with the square of the batch.
* grouped: text attention once per distinct (block, marker, boundary) query,
  blocks batched in groups padded to the group's largest window, then merged
  with each span's own pair as flash attention merges key blocks. Its work is
  linear in the batch, its memory bounded.

The position scheme (decoder.py) supplies what depends on it: the scores of a
group of queries (`GroupScores`), and the position terms and mask of the
fused call. `AttentionBudget` picks the kernel and bounds the memory.
"""

from dataclasses import dataclass
from typing import Callable, List, Tuple

import torch
from torch.nn import functional as F

# (key_index (b, K), query_codes (b, Q)) -> scores (b, h, Q, K), values
# (b, h, K, hw): the scores of a group of blocks' queries, each coded
# marker * n_positions + boundary position, over their windows' keys.
GroupScores = Callable[[torch.Tensor, torch.Tensor], Tuple[torch.Tensor, torch.Tensor]]


@dataclass(frozen=True)
class AttentionBudget:
    """How much the decoder materialises at once: it changes how the logits
    are computed (which kernel, in how many pieces), not the model. Not saved
    and not in the config; tests and profiling pass another budget to force
    a kernel or a split.

    fused_elements: up to this many attention-score elements (heads x span
        queries x keys) a batch takes the fused kernel. 0 forces the grouped
        kernel; a huge value forces the fused one.
    score_elements: bound on the padded scores of one group of blocks, so
        memory stays flat for 50,000-token docs.
    min_split_elements: below this many padded score elements a group is
        too small for padding waste to matter (the per-group op overhead
        dominates): it is not split where windows differ in size.
    inference_spans: spans decoded at once at inference (bounds the query
        and MLP activations of a long doc).
    """

    fused_elements: int = 1 << 20
    score_elements: int = 1 << 25
    min_split_elements: int = 1 << 16
    inference_spans: int = 1 << 15

    def fits_fused(self, n_heads: int, n_spans: int, n_text: int) -> bool:
        """Whether the fused kernel's scores (heads, 2n queries, n_text + 2n
        keys) are within the budget."""
        return n_heads * 2 * n_spans * (n_text + 2 * n_spans) <= self.fused_elements


# The fused kernel -----------------------------------------------------------


def fused_layout(
    span_blocks: torch.Tensor,
    window_starts: torch.Tensor,
    window_lengths: torch.Tensor,
    n_text: int,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Keys of the fused path: every block window laid end to end (`n_text`
    tokens), then every span's two queries. Returns each text key's window
    position and flat token index, and the (2n, n_text + 2n) mask of the keys
    each span query may see: its block's window and its own pair."""
    device = span_blocks.device
    n = span_blocks.shape[0]
    key_block = torch.repeat_interleave(
        torch.arange(window_lengths.shape[0], device=device), window_lengths, output_size=n_text
    )
    key_pos = (
        torch.arange(n_text, device=device)
        - (torch.cumsum(window_lengths, 0) - window_lengths)[key_block]
    )
    key_index = window_starts[key_block] + key_pos
    span_of_row = torch.arange(n, device=device).repeat_interleave(2)
    allowed = torch.cat(
        [
            span_blocks[span_of_row][:, None] == key_block[None, :],
            span_of_row[:, None] == span_of_row[None, :],
        ],
        dim=1,
    )
    return key_pos, key_index, allowed


def fused_attention(
    q: torch.Tensor,
    pair_keys: torch.Tensor,
    pair_values: torch.Tensor,
    text_keys: torch.Tensor,
    text_values: torch.Tensor,
    mask: torch.Tensor,
    n_spans: int,
    n_heads: int,
) -> torch.Tensor:
    """Attention of every span query over [its window, its pair] in one
    masked SDPA call.

    q, pair_keys: (n, 2, d), or (2, d) when every span shares them.
    pair_values: anything that reshapes to (n or 1, 2, d).
    text_keys, text_values: (n_text, d), the windows laid out by
        `fused_layout`, position terms already added.
    mask: boolean or additive, broadcastable to (1, h, 2n, n_text + 2n).
    Returns (n, 2, d).
    """
    d = text_keys.shape[-1]
    head_width = d // n_heads
    pairs = (n_spans, 2, d)
    keys = torch.cat([text_keys, pair_keys.expand(pairs).reshape(2 * n_spans, d)])
    values = torch.cat(
        [text_values, pair_values.reshape(-1, 2, d).expand(pairs).reshape(2 * n_spans, d)]
    )
    out = F.scaled_dot_product_attention(
        q.expand(pairs).reshape(2 * n_spans, n_heads, head_width).transpose(0, 1)[None],
        keys.view(-1, n_heads, head_width).transpose(0, 1)[None],
        values.view(-1, n_heads, head_width).transpose(0, 1)[None],
        attn_mask=mask,
    )  # (1, h, 2n, hw)
    return out[0].transpose(0, 1).reshape(n_spans, 2, d)


# The grouped kernel ---------------------------------------------------------


def grouped_text_attention(
    group_scores: GroupScores,
    span_blocks: torch.Tensor,
    rel_starts: torch.Tensor,
    rel_ends: torch.Tensor,
    window_starts: torch.Tensor,
    window_lengths: torch.Tensor,
    n_positions: int,
    n_heads: int,
    budget: AttentionBudget,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Unnormalised attention of each span's two queries over its block's
    text window: max and sum of exponentials (n, 2, h), exp-weighted sum of
    values (n, 2, h, hw), which `merge_with_pair` combines with the span's
    own pair (as flash attention merges key blocks).

    A query is a function of (marker, boundary) only, so all spans of a
    block that start (end) at one token share their text attention: it is
    computed once per distinct (block, marker, position) query, which is
    about max_span_length times fewer rows than one per span marker, and
    far fewer again when the span filter has pruned most spans. Blocks are
    batched in groups (`size_groups`), each block's queries padded to the
    group's largest count.
    """
    device = span_blocks.device
    n_pos = n_positions
    # Distinct queries, sorted by block: id = block * 2P + marker * P + position.
    ids = torch.stack(
        [span_blocks * (2 * n_pos) + rel_starts, span_blocks * (2 * n_pos) + n_pos + rel_ends],
        dim=1,
    )
    uniq, inverse = torch.unique(ids, return_inverse=True)
    m = uniq.shape[0]
    used, n_queries = torch.unique_consecutive(uniq // (2 * n_pos), return_counts=True)
    first_query = torch.cumsum(n_queries, 0) - n_queries
    lengths = window_lengths[used]
    order = torch.argsort(lengths, descending=True, stable=True)
    parts: List[Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]] = []
    lengths_list, counts_list = lengths[order].tolist(), n_queries[order].tolist()
    for first, last in size_groups(lengths_list, counts_list, n_heads, budget):
        group = order[first:last]
        blocks = used[group]
        n_keys = int(lengths_list[first])
        n_rows = max(counts_list[first:last])
        key_pos = torch.arange(n_keys, device=device)
        key_valid = key_pos[None, :] < window_lengths[blocks][:, None]  # (b, K)
        key_index = torch.where(key_valid, window_starts[blocks][:, None] + key_pos[None, :], 0)
        row_pos = torch.arange(n_rows, device=device)
        row_valid = row_pos[None, :] < n_queries[group][:, None]  # (b, Q)
        row_index = torch.where(row_valid, first_query[group][:, None] + row_pos[None, :], 0)
        # (b, h, Q, K) scores, (b, h, K, hw) values.
        scores, values = group_scores(key_index, uniq[row_index] % (2 * n_pos))
        scores = scores.masked_fill(~key_valid[:, None, None, :], torch.finfo(scores.dtype).min)
        top = scores.amax(dim=-1)  # (b, h, Q)
        weights = torch.exp(scores - top.unsqueeze(-1))
        out = torch.matmul(weights, values)  # (b, h, Q, hw)
        parts.append(
            (
                row_index[row_valid],
                top.transpose(1, 2)[row_valid],
                weights.sum(dim=-1).transpose(1, 2)[row_valid],
                out.transpose(1, 2)[row_valid],
            )
        )
    targets, text_max, text_sum, text_out = (torch.cat(columns) for columns in zip(*parts))
    # Rows are in group order; put them in query order, then per span.
    where = torch.empty_like(targets)
    where[targets] = torch.arange(m, device=device)
    rows = where[inverse]
    return text_max[rows], text_sum[rows], text_out[rows]


def size_groups(
    window_lengths: List[int], n_queries: List[int], n_heads: int, budget: AttentionBudget
) -> List[Tuple[int, int]]:
    """Split blocks (sorted by decreasing window) into [first, last) groups.

    A group ends when the next window is less than half the group's largest
    and the group is big enough for padding to waste real compute, or when
    the padded scores, (blocks, heads, queries, K), would exceed the memory
    bound.
    """
    groups: List[Tuple[int, int]] = []
    first = 0
    most_queries = n_queries[0] if n_queries else 0
    for i in range(1, len(window_lengths) + 1):
        if i == len(window_lengths):
            groups.append((first, i))
            break
        largest = window_lengths[first]
        rows = max(most_queries, n_queries[i])
        padded = (i + 1 - first) * n_heads * rows * largest
        too_different = window_lengths[i] * 2 < largest and padded > budget.min_split_elements
        if too_different or padded > budget.score_elements:
            groups.append((first, i))
            first = i
            most_queries = n_queries[i]
        else:
            most_queries = rows
    return groups


def merge_with_pair(
    pair_scores: torch.Tensor,
    pair_values: torch.Tensor,
    text_max: torch.Tensor,
    text_sum: torch.Tensor,
    text_out: torch.Tensor,
) -> torch.Tensor:
    """Softmax over [own pair, text window] from the text part's (max, sum,
    weighted values) and the pair's scores.

    pair_scores: (n, 2, h, 2) scores of each query over the span's [start, end] keys.
    pair_values: (n or 1, 2, h, hw) values of the span's [start, end] keys.
    Returns (n, 2, d).
    """
    n = pair_scores.shape[0]
    top = torch.maximum(text_max, pair_scores.amax(dim=-1))
    text_scale = torch.exp(text_max - top)
    weights = torch.exp(pair_scores - top.unsqueeze(-1))
    total = text_scale * text_sum + weights.sum(dim=-1)
    out = (
        text_scale.unsqueeze(-1) * text_out
        + weights[..., :1] * pair_values[:, None, 0]
        + weights[..., 1:] * pair_values[:, None, 1]
    )
    return (out / total.unsqueeze(-1)).reshape(n, 2, -1)
