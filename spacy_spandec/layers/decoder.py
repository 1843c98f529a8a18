"""The SpanDec span decoder (paper section 4), in PyTorch.

Each candidate span (i, j) gets two queries, q_i = m_start + pos(i) and
q_j = m_end + pos(j). One pre-norm cross-attention layer lets each query
attend to K = V = [q_i, q_j, z_window]: its own pair and the text, never
other spans. A shared pre-norm MLP (d -> r*d -> d, GELU) runs on both
outputs, which are concatenated and classified over O + labels.

Efficiency: the text keys/values are projected once per token and shared by
every span; all spans of a batch are decoded in a few batched tensor calls
grouped by attention block (see `candidates.attention_blocks`); the MLP and
classifier run only on the spans that survive the span filter.
"""
import math
from typing import Any, Dict, List, Optional, Tuple

import torch
from torch import nn
from torch.nn import functional as F

from .span_filter import SpanFilter, spans_to_keep

# Bound on attention-score elements materialised at once; blocks are decoded
# in groups under it, so memory stays flat for 50,000-token docs.
_MAX_SCORE_ELEMENTS = 1 << 25
# Spans decoded at once at inference (bounds the query/MLP activations).
_INFERENCE_CHUNK = 1 << 15


def sinusoidal_table(n_positions: int, width: int) -> torch.Tensor:
    position = torch.arange(n_positions, dtype=torch.float32)[:, None]
    freq = torch.exp(
        torch.arange(0, width, 2, dtype=torch.float32) * (-math.log(10000.0) / width)
    )
    table = torch.zeros(n_positions, width)
    table[:, 0::2] = torch.sin(position * freq)
    table[:, 1::2] = torch.cos(position * freq[: width // 2])
    return table


class SpanDecoder(nn.Module):
    def __init__(
        self,
        width: int,
        n_classes: int,
        n_heads: int,
        mlp_ratio: float,
        dropout: float,
        n_positions: int,
    ) -> None:
        super().__init__()
        if width % n_heads != 0:
            raise ValueError(
                f"The token vector width ({width}) must be divisible by n_heads "
                f"({n_heads}); choose n_heads among the divisors of {width}."
            )
        self.width = width
        self.n_heads = n_heads
        self.head_width = width // n_heads
        self.m_start = nn.Parameter(torch.randn(width) * 0.02)
        self.m_end = nn.Parameter(torch.randn(width) * 0.02)
        self.positions = nn.Embedding(n_positions, width)
        with torch.no_grad():
            self.positions.weight.copy_(sinusoidal_table(n_positions, width))
        self.norm_query = nn.LayerNorm(width)
        self.norm_text = nn.LayerNorm(width)
        self.q_proj = nn.Linear(width, width)
        self.k_proj = nn.Linear(width, width)
        self.v_proj = nn.Linear(width, width)
        self.o_proj = nn.Linear(width, width)
        # Positions enter the text keys through their own projection, started
        # equal to the query projection: at initialisation each boundary query
        # already attends most to its own token, so training does not have to
        # discover the position match from scratch (a CPU-budget necessity).
        self.pos_key_proj = nn.Linear(width, width, bias=False)
        with torch.no_grad():
            self.pos_key_proj.weight.copy_(self.q_proj.weight)
        hidden = max(1, int(round(width * mlp_ratio)))
        self.norm_mlp = nn.LayerNorm(width)
        self.mlp = nn.Sequential(
            nn.Linear(width, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, width)
        )
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(2 * width, n_classes)

    def forward(
        self,
        tokens: torch.Tensor,
        starts: torch.Tensor,
        ends: torch.Tensor,
        span_blocks: torch.Tensor,
        window_starts: torch.Tensor,
        window_lengths: torch.Tensor,
    ) -> torch.Tensor:
        """Logits (n, n_classes) for n spans.

        tokens: (T, d) all tokens of the batch, docs concatenated.
        starts, ends: (n,) flat token indices, ends inclusive, sorted by block.
        span_blocks: (n,) block of each span.
        window_starts, window_lengths: (B,) flat token window of each block.
        """
        n = starts.shape[0]
        if n == 0:
            return tokens.new_zeros((0, self.classifier.out_features))
        text = self.norm_text(tokens)
        text_keys = self.k_proj(text)
        text_values = self.v_proj(text)
        # Positions are relative to the block window; their key/value
        # contributions are projected once (no bias: the text carries it).
        pos_keys = self.pos_key_proj(self.positions.weight)
        pos_values = F.linear(self.positions.weight, self.v_proj.weight)

        # At inference, spans are decoded in chunks so peak memory does not
        # grow with the number of spans of a long doc (training batches are
        # bounded by the batcher, and autograd needs the whole graph anyway).
        chunk = n if torch.is_grad_enabled() else _INFERENCE_CHUNK
        logits = []
        for lo in range(0, n, chunk):
            hi = min(lo + chunk, n)
            logits.append(
                self._decode(
                    starts[lo:hi],
                    ends[lo:hi],
                    span_blocks[lo:hi],
                    text_keys,
                    text_values,
                    pos_keys,
                    pos_values,
                    window_starts,
                    window_lengths,
                )
            )
        return logits[0] if len(logits) == 1 else torch.cat(logits, dim=0)

    def _decode(
        self,
        starts: torch.Tensor,
        ends: torch.Tensor,
        span_blocks: torch.Tensor,
        text_keys: torch.Tensor,
        text_values: torch.Tensor,
        pos_keys: torch.Tensor,
        pos_values: torch.Tensor,
        window_starts: torch.Tensor,
        window_lengths: torch.Tensor,
    ) -> torch.Tensor:
        n = starts.shape[0]
        rel_starts = starts - window_starts[span_blocks]
        rel_ends = ends - window_starts[span_blocks]
        # A query depends only on its marker and position, so its normed
        # projections are computed once per table row (2 x n_positions), and
        # each span looks them up: no per-span Q/K/V matmuls.
        marker_in = torch.stack(
            [self.m_start + self.positions.weight, self.m_end + self.positions.weight]
        )  # (2, P, d)
        normed = self.norm_query(marker_in)

        def lookup(table: torch.Tensor) -> torch.Tensor:
            return torch.stack([table[0][rel_starts], table[1][rel_ends]], dim=1)  # (n, 2, d)

        queries_in = lookup(marker_in)
        attended = self._attend(
            lookup(self.q_proj(normed)),
            lookup(self.k_proj(normed)),
            lookup(self.v_proj(normed)),
            text_keys,
            text_values,
            pos_keys,
            pos_values,
            span_blocks,
            window_starts,
            window_lengths,
        )
        hidden = queries_in + self.dropout(self.o_proj(attended))
        hidden = hidden + self.dropout(self.mlp(self.norm_mlp(hidden)))
        return self.classifier(hidden.reshape(n, 2 * self.width))

    def _attend(
        self,
        q: torch.Tensor,
        k_self: torch.Tensor,
        v_self: torch.Tensor,
        text_keys: torch.Tensor,
        text_values: torch.Tensor,
        pos_keys: torch.Tensor,
        pos_values: torch.Tensor,
        span_blocks: torch.Tensor,
        window_starts: torch.Tensor,
        window_lengths: torch.Tensor,
    ) -> torch.Tensor:
        """Cross-attention of each span's pair over [own pair, text window]."""
        n_blocks = window_starts.shape[0]
        counts = torch.bincount(span_blocks, minlength=n_blocks)
        # Blocks differ a lot in size (a 3-token sentence vs a 60-token one).
        # Decode them in groups of similar size, largest first, so padding
        # to a group's largest block wastes little compute.
        cost = counts * window_lengths
        order = torch.argsort(cost, descending=True, stable=True)
        rank = torch.empty_like(order)
        rank[order] = torch.arange(n_blocks, device=order.device)
        span_order = torch.argsort(rank[span_blocks], stable=True)
        q, k_self, v_self = q[span_order], k_self[span_order], v_self[span_order]
        blocks_sorted = rank[span_blocks][span_order]
        counts, window_starts, window_lengths = counts[order], window_starts[order], window_lengths[order]
        offsets = torch.cumsum(counts, 0) - counts
        outputs: List[torch.Tensor] = []
        for first, last in _size_groups(counts.tolist(), window_lengths.tolist(), self.n_heads):
            lo = int(offsets[first])
            hi = int(offsets[last - 1] + counts[last - 1])
            if hi == lo:
                continue
            outputs.append(
                self._attend_group(
                    q[lo:hi],
                    k_self[lo:hi],
                    v_self[lo:hi],
                    text_keys,
                    text_values,
                    pos_keys,
                    pos_values,
                    blocks_sorted[lo:hi] - first,
                    offsets[first:last] - lo,
                    counts[first:last],
                    window_starts[first:last],
                    window_lengths[first:last],
                )
            )
        attended = torch.cat(outputs, dim=0)
        restored = torch.empty_like(attended)
        restored[span_order] = attended
        return restored

    def _attend_group(
        self,
        q: torch.Tensor,
        k_self: torch.Tensor,
        v_self: torch.Tensor,
        text_keys: torch.Tensor,
        text_values: torch.Tensor,
        pos_keys: torch.Tensor,
        pos_values: torch.Tensor,
        span_blocks: torch.Tensor,
        offsets: torch.Tensor,
        counts: torch.Tensor,
        window_starts: torch.Tensor,
        window_lengths: torch.Tensor,
    ) -> torch.Tensor:
        n = q.shape[0]
        n_blocks = window_starts.shape[0]
        h, hw, d = self.n_heads, self.head_width, self.width
        max_spans = int(counts.max())
        max_keys = int(window_lengths.max())
        device = q.device
        # Pad spans into (blocks, max_spans) slots.
        rank = torch.arange(n, device=device) - offsets[span_blocks]
        slots = span_blocks * max_spans + rank

        def pad(x: torch.Tensor) -> torch.Tensor:
            out = x.new_zeros((n_blocks * max_spans, 2, d))
            out = out.index_copy(0, slots, x)
            return out.view(n_blocks, max_spans, 2, h, hw)

        q_pad, ks_pad, vs_pad = pad(q), pad(k_self), pad(v_self)
        key_pos = torch.arange(max_keys, device=device)
        key_valid = key_pos[None, :] < window_lengths[:, None]  # (B, K)
        key_index = torch.where(
            key_valid, window_starts[:, None] + key_pos[None, :], torch.zeros_like(key_valid, dtype=torch.long)
        )
        k_text = (text_keys[key_index] + pos_keys[:max_keys]).view(n_blocks, max_keys, h, hw)
        v_text = (text_values[key_index] + pos_values[:max_keys]).view(n_blocks, max_keys, h, hw)
        scale = 1.0 / math.sqrt(hw)
        q_heads = q_pad.view(n_blocks, max_spans * 2, h, hw).transpose(1, 2)  # (B,h,2S,hw)
        text_scores = torch.matmul(q_heads, k_text.permute(0, 2, 3, 1)) * scale  # (B,h,2S,K)
        mask_value = torch.finfo(text_scores.dtype).min
        text_scores = text_scores.masked_fill(~key_valid[:, None, None, :], mask_value)
        text_scores = text_scores.view(n_blocks, h, max_spans, 2, max_keys)
        self_scores = torch.einsum("bsahd,bschd->bhsac", q_pad, ks_pad) * scale
        weights = torch.softmax(torch.cat([self_scores, text_scores], dim=-1), dim=-1)
        w_self = weights[..., :2]
        w_text = weights[..., 2:].reshape(n_blocks, h, max_spans * 2, max_keys)
        out_text = torch.matmul(w_text, v_text.transpose(1, 2))  # (B,h,2S,hw)
        out_self = torch.einsum("bhsac,bschd->bhsad", w_self, vs_pad)
        out = out_text.view(n_blocks, h, max_spans, 2, hw) + out_self
        out = out.permute(0, 2, 3, 1, 4).reshape(n_blocks * max_spans, 2, d)
        return out.index_select(0, slots)


def _size_groups(
    counts: List[int], window_lengths: List[int], n_heads: int
) -> List[Tuple[int, int]]:
    """Split blocks (sorted by decreasing size) into [first, last) groups.

    A group ends when the next block is less than half the size of the
    group's largest one, or when the padded attention scores would exceed
    the memory bound.
    """
    groups: List[Tuple[int, int]] = []
    first = 0
    for i in range(1, len(counts) + 1):
        if i == len(counts):
            groups.append((first, i))
            break
        largest = counts[first] * window_lengths[first]
        padded = (i + 1 - first) * n_heads * 2 * counts[first] * (window_lengths[first] + 2)
        if counts[i] * window_lengths[i] * 2 < largest or padded > _MAX_SCORE_ELEMENTS:
            groups.append((first, i))
            first = i
    return groups


class SpanDecNet(nn.Module):
    """Span filter + span decoder: the whole PyTorch side of `spandec_ner`.

    Parameters live under the `spandec.` prefix so the optimizer can give the
    new (non-pretrained) weights their higher learning rate.
    """

    def __init__(self, config: Dict[str, Any]) -> None:
        super().__init__()
        self.config = dict(config)
        width = int(config["width"])
        modules: Dict[str, nn.Module] = {
            "decoder": SpanDecoder(
                width,
                int(config["n_classes"]),
                int(config["n_heads"]),
                float(config["mlp_ratio"]),
                float(config["dropout"]),
                int(config["n_positions"]),
            )
        }
        if config["span_filter"]:
            modules["span_filter"] = SpanFilter(width)
        self.spandec = nn.ModuleDict(modules)

    @property
    def has_span_filter(self) -> bool:
        return "span_filter" in self.spandec

    def forward(
        self,
        tokens: torch.Tensor,
        starts: torch.Tensor,
        ends: torch.Tensor,
        span_blocks: torch.Tensor,
        window_starts: torch.Tensor,
        window_lengths: torch.Tensor,
        sf_threshold: float,
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(span logits of kept spans, token SF logits, indices of kept spans)."""
        if self.has_span_filter:
            token_logits = self.spandec["span_filter"](tokens)
        else:
            token_logits = tokens.new_zeros((tokens.shape[0],))
        keep = spans_to_keep(token_logits, starts, ends, sf_threshold if self.has_span_filter else 0.0)
        kept = torch.nonzero(keep, as_tuple=False).squeeze(-1)
        if kept.shape[0] != starts.shape[0]:
            starts, ends, span_blocks = starts[kept], ends[kept], span_blocks[kept]
        logits = self.spandec["decoder"](
            tokens, starts, ends, span_blocks, window_starts, window_lengths
        )
        return logits, token_logits, kept


def build_net(config: Optional[Dict[str, Any]]) -> nn.Module:
    """A placeholder before the shapes are known, the real net after."""
    if config is None:
        return nn.Module()
    return SpanDecNet(config)
