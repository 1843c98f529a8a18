"""The SpanDec span decoder (paper section 4), in PyTorch.

Each candidate span (i, j) gets two queries, q_i = m_start + pos(i) and
q_j = m_end + pos(j). One pre-norm cross-attention layer lets each query
attend to K = V = [q_i, q_j, z_window]: its own pair and the text, never
other spans. A shared pre-norm MLP (d -> r*d -> d, GELU) runs on both
outputs, which are concatenated and classified over O + labels.

Efficiency: the text keys/values are projected once per token and shared by
every span; a query depends only on its marker and relative position, so its
projections are tables over positions (computed once per serving view at
inference), and its attention over the text window is computed once per
distinct (block, marker, position) that a decoded span uses, then merged with
each span's own pair (flash-attention style); the MLP and classifier run only
on the spans that survive the span filter.
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
# Below this many padded score elements a group is too small for padding
# waste to matter: the per-group op overhead dominates (SF-pruned batches).
_MIN_SPLIT_ELEMENTS = 1 << 16
# Spans decoded at once at inference (bounds the query/MLP activations).
_INFERENCE_CHUNK = 1 << 15
# Up to this many attention-score elements (heads x span queries x keys),
# a batch is attended in one fused scaled_dot_product_attention call over
# all its block windows and span pairs, with a mask keeping each query to
# its own window and pair: one kernel instead of dozens of small ops, which
# is what an SF-pruned batch of sentences costs. Larger batches use the
# grouped path, whose work does not grow with the square of the batch.
_MAX_FUSED_ELEMENTS = 1 << 20


POSITION_INITS = ("sinusoidal", "random")


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
        position_init: str = "sinusoidal",
        position_key_scale: float = 1.0,
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
            if position_init == "sinusoidal":
                self.positions.weight.copy_(sinusoidal_table(n_positions, width))
            else:
                # Same squared norm as a sinusoidal row (width / 2).
                self.positions.weight.normal_(0.0, math.sqrt(0.5))
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
            self.pos_key_proj.weight.copy_(self.q_proj.weight * position_key_scale)
        hidden = max(1, int(round(width * mlp_ratio)))
        self.norm_mlp = nn.LayerNorm(width)
        self.mlp = nn.Sequential(
            nn.Linear(width, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, width)
        )
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(2 * width, n_classes)

    def query_tables(self) -> Dict[str, torch.Tensor]:
        """Everything that depends on the weights alone, not on the text.

        A query is a function of (marker, relative position), so its input,
        its normed Q/K/V projections (for the span's own pair) and the
        positions' key/value contributions are tables over positions. At
        inference the serving view computes them once per weight update and
        passes them to `forward`; training recomputes them, as autograd needs.
        """
        marker_in = torch.stack(
            [self.m_start + self.positions.weight, self.m_end + self.positions.weight]
        )  # (2, P, d)
        normed = self.norm_query(marker_in)
        return {
            # Positions enter the text keys through their own projection, the
            # values through v_proj (no bias: the text token carries it).
            "pos_keys": self.pos_key_proj(self.positions.weight),
            "pos_values": F.linear(self.positions.weight, self.v_proj.weight),
            # (2, P, 4d): [input, q, k, v] of each (marker, position) query,
            # so a span's two queries are two row lookups.
            "queries": torch.cat(
                [marker_in, self.q_proj(normed), self.k_proj(normed), self.v_proj(normed)], dim=-1
            ),
        }

    def forward(
        self,
        tokens: torch.Tensor,
        starts: torch.Tensor,
        ends: torch.Tensor,
        span_blocks: torch.Tensor,
        window_starts: torch.Tensor,
        window_lengths: torch.Tensor,
        query_tables: Optional[Dict[str, torch.Tensor]] = None,
    ) -> torch.Tensor:
        """Logits (n, n_classes) for n spans.

        tokens: (T, d) all tokens of the batch, docs concatenated.
        starts, ends: (n,) flat token indices, ends inclusive, sorted by block.
        span_blocks: (n,) block of each span.
        window_starts, window_lengths: (B,) flat token window of each block.
        query_tables: `self.query_tables()` computed earlier, for inference
        with fixed weights; None computes them now.
        """
        n = starts.shape[0]
        if n == 0:
            return tokens.new_zeros((0, self.classifier.out_features))
        text = self.norm_text(tokens)
        text_keys = self.k_proj(text)
        text_values = self.v_proj(text)
        tables = self.query_tables() if query_tables is None else query_tables

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
                    tables,
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
        tables: Dict[str, torch.Tensor],
        window_starts: torch.Tensor,
        window_lengths: torch.Tensor,
    ) -> torch.Tensor:
        n = starts.shape[0]
        d = self.width
        rel_starts = starts - window_starts[span_blocks]
        rel_ends = ends - window_starts[span_blocks]
        queries = tables["queries"]
        n_pos = queries.shape[1]
        # One gather from the (2P, 4d) table: row p is a start query, P + p an end query.
        own = queries.reshape(2 * n_pos, 4 * d)[torch.stack([rel_starts, rel_ends + n_pos], dim=1)]  # (n, 2, 4d)
        marker_in, q, k_self, v_self = own.split(d, dim=-1)
        n_text = int(window_lengths.sum())
        if self.n_heads * 2 * n * (n_text + 2 * n) <= _MAX_FUSED_ELEMENTS:
            attended = self._attend_fused(
                q, k_self, v_self, text_keys, text_values, tables, span_blocks, window_starts, window_lengths, n_text
            )
        else:
            attended = self._attend_grouped(
                q, k_self, v_self, text_keys, text_values, tables,
                span_blocks, rel_starts, rel_ends, window_starts, window_lengths,
            )
        return self.span_head(marker_in, attended)

    def span_head(self, marker_in: torch.Tensor, attended: torch.Tensor) -> torch.Tensor:
        """The per-span layers after attention: output projection with the
        residual, the shared MLP, the classifier over [h_i; h_j].
        (n, 2, d), (n, 2, d) -> (n, n_classes)."""
        hidden = marker_in + self.dropout(self.o_proj(attended))
        hidden = hidden + self.dropout(self.mlp(self.norm_mlp(hidden)))
        return self.classifier(hidden.reshape(hidden.shape[0], 2 * self.width))

    def _attend_fused(
        self,
        q: torch.Tensor,
        k_self: torch.Tensor,
        v_self: torch.Tensor,
        text_keys: torch.Tensor,
        text_values: torch.Tensor,
        tables: Dict[str, torch.Tensor],
        span_blocks: torch.Tensor,
        window_starts: torch.Tensor,
        window_lengths: torch.Tensor,
        n_text: int,
    ) -> torch.Tensor:
        """Attention of every span query over [own pair, own window] in one
        masked SDPA call: keys are all block windows laid end to end
        (`n_text` tokens), then every span's two queries as keys of its own
        pair. (n, 2, d)."""
        n, d = q.shape[0], self.width
        h, hw = self.n_heads, self.head_width
        device = q.device
        key_block = torch.repeat_interleave(
            torch.arange(window_lengths.shape[0], device=device), window_lengths, output_size=n_text
        )
        key_pos = torch.arange(n_text, device=device) - (torch.cumsum(window_lengths, 0) - window_lengths)[key_block]
        key_index = window_starts[key_block] + key_pos
        keys = torch.cat([text_keys[key_index] + tables["pos_keys"][key_pos], k_self.reshape(2 * n, d)])
        values = torch.cat([text_values[key_index] + tables["pos_values"][key_pos], v_self.reshape(2 * n, d)])
        span_of_row = torch.arange(n, device=device).repeat_interleave(2)
        allowed = torch.cat(
            [span_blocks[span_of_row][:, None] == key_block[None, :], span_of_row[:, None] == span_of_row[None, :]],
            dim=1,
        )  # (2n, n_text + 2n)
        out = F.scaled_dot_product_attention(
            q.reshape(2 * n, h, hw).transpose(0, 1)[None],
            keys.view(-1, h, hw).transpose(0, 1)[None],
            values.view(-1, h, hw).transpose(0, 1)[None],
            attn_mask=allowed[None, None],
        )  # (1, h, 2n, hw)
        return out[0].transpose(0, 1).reshape(n, 2, d)

    def _attend_grouped(
        self,
        q: torch.Tensor,
        k_self: torch.Tensor,
        v_self: torch.Tensor,
        text_keys: torch.Tensor,
        text_values: torch.Tensor,
        tables: Dict[str, torch.Tensor],
        span_blocks: torch.Tensor,
        rel_starts: torch.Tensor,
        rel_ends: torch.Tensor,
        window_starts: torch.Tensor,
        window_lengths: torch.Tensor,
    ) -> torch.Tensor:
        """Text attention once per distinct query, in block groups, merged
        with each span's own pair: (n, 2, d)."""
        d = self.width
        text_max, text_sum, text_out = self._attend_text(
            tables["queries"][..., d : 2 * d],
            text_keys,
            text_values,
            tables["pos_keys"],
            tables["pos_values"],
            span_blocks,
            rel_starts,
            rel_ends,
            window_starts,
            window_lengths,
        )
        return self._merge_self(q, k_self, v_self, text_max, text_sum, text_out)

    def _attend_text(
        self,
        q_table: torch.Tensor,
        text_keys: torch.Tensor,
        text_values: torch.Tensor,
        pos_keys: torch.Tensor,
        pos_values: torch.Tensor,
        span_blocks: torch.Tensor,
        rel_starts: torch.Tensor,
        rel_ends: torch.Tensor,
        window_starts: torch.Tensor,
        window_lengths: torch.Tensor,
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Unnormalised attention of each span's two queries over its block's
        text window: max and sum of exponentials (n, 2, h), exp-weighted sum of
        values (n, 2, h, hw), which `_merge_self` combines with the span's own
        pair (as flash attention merges key blocks).

        A query is a function of (marker, relative position) only, so all
        spans of a block that start (end) at one position share their text
        attention: it is computed once per distinct (block, marker, position)
        query, which is about max_span_length times fewer rows than one per
        span marker, and far fewer again when the span filter has pruned most
        spans. Blocks are batched in groups (`_size_groups`), each block's
        queries padded to the group's largest count.
        """
        h, hw = self.n_heads, self.head_width
        device = q_table.device
        n_pos = q_table.shape[1]
        # Distinct queries, sorted by block: id = block * 2P + marker * P + position.
        ids = torch.stack(
            [span_blocks * (2 * n_pos) + rel_starts, span_blocks * (2 * n_pos) + n_pos + rel_ends], dim=1
        )
        uniq, inverse = torch.unique(ids, return_inverse=True)
        m = uniq.shape[0]
        query_rows = q_table.reshape(2 * n_pos, h, hw)[uniq % (2 * n_pos)]  # (m, h, hw)
        used, n_queries = torch.unique_consecutive(uniq // (2 * n_pos), return_counts=True)
        first_query = torch.cumsum(n_queries, 0) - n_queries
        lengths = window_lengths[used]
        order = torch.argsort(lengths, descending=True, stable=True)
        scale = 1.0 / math.sqrt(hw)
        parts: List[Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]] = []
        lengths_list, counts_list = lengths[order].tolist(), n_queries[order].tolist()
        for first, last in _size_groups(lengths_list, counts_list, h):
            group = order[first:last]
            blocks = used[group]
            n_blocks, n_keys = last - first, int(lengths_list[first])
            n_rows = max(counts_list[first:last])
            key_pos = torch.arange(n_keys, device=device)
            key_valid = key_pos[None, :] < window_lengths[blocks][:, None]  # (b, K)
            key_index = torch.where(key_valid, window_starts[blocks][:, None] + key_pos[None, :], 0)
            k_text = (text_keys[key_index] + pos_keys[:n_keys]).view(n_blocks, n_keys, h, hw)
            v_text = (text_values[key_index] + pos_values[:n_keys]).view(n_blocks, n_keys, h, hw)
            row_pos = torch.arange(n_rows, device=device)
            row_valid = row_pos[None, :] < n_queries[group][:, None]  # (b, Q)
            row_index = torch.where(row_valid, first_query[group][:, None] + row_pos[None, :], 0)
            q = query_rows[row_index].permute(0, 2, 1, 3)  # (b, h, Q, hw)
            scores = torch.matmul(q, k_text.permute(0, 2, 3, 1)) * scale  # (b, h, Q, K)
            scores = scores.masked_fill(~key_valid[:, None, None, :], torch.finfo(scores.dtype).min)
            top = scores.amax(dim=-1)  # (b, h, Q)
            weights = torch.exp(scores - top.unsqueeze(-1))
            out = torch.matmul(weights, v_text.transpose(1, 2))  # (b, h, Q, hw)
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

    def _merge_self(
        self,
        q: torch.Tensor,
        k_self: torch.Tensor,
        v_self: torch.Tensor,
        text_max: torch.Tensor,
        text_sum: torch.Tensor,
        text_out: torch.Tensor,
    ) -> torch.Tensor:
        """Softmax over [own pair, text window] from the text part's
        (max, sum, weighted values) and the pair's two scores: (n, 2, d)."""
        n = q.shape[0]
        h, hw = self.n_heads, self.head_width
        q = q.reshape(n, 2, h, hw)
        k_self = k_self.reshape(n, 2, h, hw)
        v_self = v_self.reshape(n, 2, h, hw)
        # Two keys per query: elementwise products beat tiny batched matmuls.
        scale = 1.0 / math.sqrt(hw)
        score_start = (q * k_self[:, :1]).sum(dim=-1) * scale  # (n, 2, h)
        score_end = (q * k_self[:, 1:]).sum(dim=-1) * scale
        top = torch.maximum(text_max, torch.maximum(score_start, score_end))
        text_scale = torch.exp(text_max - top)
        w_start = torch.exp(score_start - top)
        w_end = torch.exp(score_end - top)
        total = text_scale * text_sum + w_start + w_end
        out = (
            text_scale.unsqueeze(-1) * text_out
            + w_start.unsqueeze(-1) * v_self[:, :1]
            + w_end.unsqueeze(-1) * v_self[:, 1:]
        )
        return (out / total.unsqueeze(-1)).reshape(n, 2, h * hw)


def _size_groups(window_lengths: List[int], n_queries: List[int], n_heads: int) -> List[Tuple[int, int]]:
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
        too_different = window_lengths[i] * 2 < largest and padded > _MIN_SPLIT_ELEMENTS
        if too_different or padded > _MAX_SCORE_ELEMENTS:
            groups.append((first, i))
            first = i
            most_queries = n_queries[i]
        else:
            most_queries = rows
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
                str(config.get("position_init", "sinusoidal")),
                float(config.get("position_key_scale", 1.0)),
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
        query_tables: Optional[Dict[str, torch.Tensor]] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(span logits of kept spans, token SF logits, indices of kept spans).

        query_tables: the decoder's precomputed `query_tables()` (serving views).
        """
        if self.has_span_filter:
            token_logits = self.spandec["span_filter"](tokens)
        else:
            token_logits = tokens.new_zeros((tokens.shape[0],))
        keep = spans_to_keep(token_logits, starts, ends, sf_threshold if self.has_span_filter else 0.0)
        kept = torch.nonzero(keep, as_tuple=False).squeeze(-1)
        if kept.shape[0] != starts.shape[0]:
            starts, ends, span_blocks = starts[kept], ends[kept], span_blocks[kept]
        logits = self.spandec["decoder"](
            tokens, starts, ends, span_blocks, window_starts, window_lengths, query_tables
        )
        return logits, token_logits, kept


def build_net(config: Optional[Dict[str, Any]]) -> nn.Module:
    """A placeholder before the shapes are known, the real net after."""
    if config is None:
        return nn.Module()
    return SpanDecNet(config)
