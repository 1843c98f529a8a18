"""The SpanDec span decoder (paper section 4), in PyTorch.

Each candidate span (i, j) gets two queries, a start query for its boundary
token i and an end query for j. One pre-norm cross-attention layer lets each
query attend to K = V = [its own pair, z_window]: the span's two queries and
the text, never other spans. A shared pre-norm MLP (d -> r*d -> d, GELU) runs
on both outputs, which are concatenated and classified over O + labels.

Two position schemes, one per registered architecture:

* `RelativeSpanDecoder` (SpanDecoder.v2, the default): a query is its marker
  alone, q = m_start or m_end, and attention adds a learned per-head bias of
  the offset between the key's token and the query's boundary token (T5 /
  ALiBi style), plus a learned span-width embedding after attention. A span's
  logits do not depend on where it sits in its window, so a model trained on
  sentences decodes documents.
* `AbsoluteSpanDecoder` (SpanDecoder.v1): the paper's q_i = m_start + pos(i),
  q_j = m_end + pos(j), with positions counted from the start of the span's
  block window. Kept so that pipelines trained with v1 load and predict as
  before; it does not transfer from sentences to longer texts.

Efficiency: the text keys/values are projected once per token and shared by
every span; a query depends only on its marker and boundary, so its weight-
only parts are tables (computed once per serving view at inference), and its
attention over the text window is computed once per distinct (block, marker,
boundary) that a decoded span uses, then merged with each span's own pair
(flash-attention style), or for small batches in one fused masked call: the
kernels are in attention.py. The MLP and classifier run only on the spans
that survive the span filter.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any, Dict, Optional, Tuple

import torch
from torch import nn
from torch.nn import functional as F

from .attention import (
    AttentionBudget,
    fused_attention,
    fused_layout,
    grouped_text_attention,
    merge_with_pair,
)
from .span_filter import SpanFilter, spans_to_keep

POSITION_INITS = ("sinusoidal", "random")
# The position schemes of the net config ("positions").
POSITION_SCHEMES = ("absolute", "relative")
# What a net config saved before a key existed was built with, so that
# pipelines saved then still load. History, not defaults: the defaults live
# in the factory's config and the registered architectures, and must not be
# read from here. position_init and position_key_scale only shape the initial
# weights, which the saved ones replace; "positions" predates the relative
# scheme, so its absence means absolute.
SAVED_BEFORE_KEY: Dict[str, Any] = {
    "positions": "absolute",
    "position_init": "sinusoidal",
    "position_key_scale": 1.0,
}

# The ModuleDict of SpanDecNet that holds every parameter: state-dict keys,
# so the weights of saved pipelines, start with it (renaming it would orphan
# them), and the optimizer's `new_weights` pattern picks out the decoder and
# span filter by it.
PARAMETER_PREFIX = "spandec"
DECODER_PREFIX = f"{PARAMETER_PREFIX}.decoder."
# The decoder's Linear layers that run once per decoded span (the others run
# once per token or per weight update): what int8/bf16 serving converts.
# MLP_IN and MLP_OUT are the two Linears of `mlp` (Linear, GELU, Dropout, Linear).
MLP_IN, MLP_OUT = "mlp.0", "mlp.3"
PER_SPAN_LINEARS = ("o_proj", MLP_IN, MLP_OUT, "classifier")


def mlp_width(width: int, mlp_ratio: float) -> int:
    """Hidden width of the per-span MLP, which the load check also needs."""
    return max(1, int(round(width * mlp_ratio)))


def build_net(config: Optional[Dict[str, Any]]) -> nn.Module:
    """A placeholder before the shapes are known, the real net after."""
    if config is None:
        return nn.Module()
    return SpanDecNet(config)


class SpanDecNet(nn.Module):
    """Span filter + span decoder: the whole PyTorch side of `spandec_ner`.

    Parameters live under `PARAMETER_PREFIX` so the optimizer can give the
    new (non-pretrained) weights their higher learning rate.
    """

    def __init__(self, config: Dict[str, Any]) -> None:
        super().__init__()
        self.config = dict(config)
        width = int(config["width"])
        modules: Dict[str, nn.Module] = {"decoder": build_decoder(config)}
        if config["span_filter"]:
            modules["span_filter"] = SpanFilter(width)
        self.add_module(PARAMETER_PREFIX, nn.ModuleDict(modules))

    @property
    def parts(self) -> nn.ModuleDict:
        """The decoder and, if any, the span filter: the `PARAMETER_PREFIX` ModuleDict."""
        return self._modules[PARAMETER_PREFIX]

    @property
    def decoder(self) -> _SpanDecoderBase:
        return self.parts["decoder"]

    @property
    def has_span_filter(self) -> bool:
        return "span_filter" in self.parts

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
            token_logits = self.parts["span_filter"](tokens)
        else:
            token_logits = tokens.new_zeros((tokens.shape[0],))
        keep = spans_to_keep(
            token_logits, starts, ends, sf_threshold if self.has_span_filter else 0.0
        )
        kept = torch.nonzero(keep, as_tuple=False).squeeze(-1)
        if kept.shape[0] != starts.shape[0]:
            starts, ends, span_blocks = starts[kept], ends[kept], span_blocks[kept]
        logits = self.decoder(
            tokens, starts, ends, span_blocks, window_starts, window_lengths, query_tables
        )
        return logits, token_logits, kept


def build_decoder(config: Dict[str, Any]) -> _SpanDecoderBase:
    """The decoder of a net config, in its position scheme."""
    scheme = position_scheme(config)
    config = {**SAVED_BEFORE_KEY, **config}
    shape = (
        int(config["width"]),
        int(config["n_classes"]),
        int(config["n_heads"]),
        float(config["mlp_ratio"]),
        float(config["dropout"]),
        int(config["n_positions"]),
    )
    if scheme == "relative":
        return RelativeSpanDecoder(*shape, max_span_length=int(config["max_span_length"]))
    return AbsoluteSpanDecoder(
        *shape,
        position_init=str(config["position_init"]),
        position_key_scale=float(config["position_key_scale"]),
    )


def position_scheme(config: Dict[str, Any]) -> str:
    """The position scheme of a net config, also of one saved before the key."""
    scheme = config.get("positions", SAVED_BEFORE_KEY["positions"])
    if scheme not in POSITION_SCHEMES:
        raise ValueError(f"positions must be one of {list(POSITION_SCHEMES)}, got {scheme!r}")
    return scheme


class _SpanDecoderBase(nn.Module):
    """The layers and the attention arithmetic both position schemes share.

    A subclass says how a query scores its own pair (`_pair`) and the text of
    its window, in the grouped path (`_group_scores`) and the fused one
    (`_fused_terms`), and what the per-span layers add after attention
    (`span_head`).
    """

    def __init__(
        self,
        width: int,
        n_classes: int,
        n_heads: int,
        mlp_ratio: float,
        dropout: float,
        n_positions: int,
        budget: Optional[AttentionBudget],
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
        self.n_positions = n_positions
        # How the attention is computed, not what: not saved, not in the config.
        self.budget = AttentionBudget() if budget is None else budget
        self.m_start = nn.Parameter(torch.randn(width) * 0.02)
        self.m_end = nn.Parameter(torch.randn(width) * 0.02)
        self.norm_query = nn.LayerNorm(width)
        self.norm_text = nn.LayerNorm(width)
        self.q_proj = nn.Linear(width, width)
        self.k_proj = nn.Linear(width, width)
        self.v_proj = nn.Linear(width, width)
        self.o_proj = nn.Linear(width, width)
        hidden = mlp_width(width, mlp_ratio)
        self.norm_mlp = nn.LayerNorm(width)
        self.mlp = nn.Sequential(
            nn.Linear(width, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, width)
        )
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(2 * width, n_classes)

    def query_tables(self) -> Dict[str, torch.Tensor]:
        """Everything that depends on the weights alone, not on the text.
        At inference the serving view computes it once per weight update and
        passes it to `forward`; training recomputes it, as autograd needs."""
        raise NotImplementedError

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
        chunk = n if torch.is_grad_enabled() else self.budget.inference_spans
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
        """Logits of one chunk of spans: attention in the kernel the budget
        allows (attention.py), then the per-span layers."""
        n = starts.shape[0]
        rel_starts = starts - window_starts[span_blocks]
        rel_ends = ends - window_starts[span_blocks]
        marker_in, q, pair_keys, pair_scores, pair_values = self._pair(
            tables, starts, ends, rel_starts, rel_ends
        )
        n_text = int(window_lengths.sum())
        if self.budget.fits_fused(self.n_heads, n, n_text):
            attended = self._attend_fused(
                q,
                pair_keys,
                pair_values,
                text_keys,
                text_values,
                tables,
                starts,
                ends,
                span_blocks,
                window_starts,
                window_lengths,
                n_text,
            )
        else:
            text_max, text_sum, text_out = grouped_text_attention(
                partial(self._group_scores, tables, text_keys, text_values),
                span_blocks,
                rel_starts,
                rel_ends,
                window_starts,
                window_lengths,
                self.n_positions,
                self.n_heads,
                self.budget,
            )
            attended = merge_with_pair(pair_scores, pair_values, text_max, text_sum, text_out)
        return self.span_head(marker_in, attended, ends - starts)

    def _attend_fused(
        self,
        q: torch.Tensor,
        pair_keys: torch.Tensor,
        pair_values: torch.Tensor,
        text_keys: torch.Tensor,
        text_values: torch.Tensor,
        tables: Dict[str, torch.Tensor],
        starts: torch.Tensor,
        ends: torch.Tensor,
        span_blocks: torch.Tensor,
        window_starts: torch.Tensor,
        window_lengths: torch.Tensor,
        n_text: int,
    ) -> torch.Tensor:
        """The fused kernel's inputs: the windows laid end to end
        (`fused_layout`), with the scheme's position terms on the text keys
        and values and its mask (`_fused_terms`).
        q, pair_keys: (n, 2, d) or, shared by every span, (2, d). (n, 2, d)."""
        key_pos, key_index, allowed = fused_layout(
            span_blocks, window_starts, window_lengths, n_text
        )
        pos_keys, pos_values, mask = self._fused_terms(
            tables, key_pos, key_index, starts, ends, allowed
        )
        keys, values = text_keys[key_index], text_values[key_index]
        if pos_keys is not None:
            keys, values = keys + pos_keys, values + pos_values
        return fused_attention(
            q, pair_keys, pair_values, keys, values, mask, starts.shape[0], self.n_heads
        )

    def span_head(
        self, marker_in: torch.Tensor, attended: torch.Tensor, widths: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        """The per-span layers after attention: output projection with the
        residual, the shared MLP, the classifier over [h_i; h_j].
        (n, 2, d) or (2, d), (n, 2, d), (n,) widths - 1 -> (n, n_classes)."""
        hidden = marker_in + self.dropout(self.o_proj(attended))
        hidden = hidden + self.dropout(self.mlp(self.norm_mlp(hidden)))
        return self.classifier(hidden.reshape(hidden.shape[0], 2 * self.width))


class RelativeSpanDecoder(_SpanDecoderBase):
    """SpanDec with relative positions (SpanDecoder.v2).

    A query is its marker: q = W_q LN(m_start) or W_q LN(m_end). The score of
    a query at boundary token b for a key at token t is
    q . k_t / sqrt(hw) + bias[marker, head, t - b]: a learned bias table over
    offsets, started as ALiBi distance penalties (`alibi_slopes`). The span's
    own pair is scored the same way, so a start query sees its end key at
    offset j - i. After attention a learned embedding of the span's width
    joins the residual. Nothing depends on where a span sits in its window.
    """

    def __init__(
        self,
        width: int,
        n_classes: int,
        n_heads: int,
        mlp_ratio: float,
        dropout: float,
        n_positions: int,
        max_span_length: int,
        budget: Optional[AttentionBudget] = None,
    ) -> None:
        super().__init__(width, n_classes, n_heads, mlp_ratio, dropout, n_positions, budget)
        # Offsets -(P-1) .. P-1 of any key in a window from any boundary in it.
        offsets = torch.arange(2 * n_positions - 1, dtype=torch.float32) - (n_positions - 1)
        bias = -alibi_slopes(n_heads)[:, None] * offsets.abs()[None, :]
        self.relative_bias = nn.Parameter(bias[None].repeat(2, 1, 1))  # (marker, head, offset)
        self.width_embed = nn.Parameter(torch.randn(2, max_span_length, width) * 0.02)

    def query_tables(self) -> Dict[str, torch.Tensor]:
        markers = torch.stack([self.m_start, self.m_end])  # (2, d)
        normed = self.norm_query(markers)
        # (2, 4d): [input, q, k, v] of the start and end markers.
        return {
            "queries": torch.cat(
                [markers, self.q_proj(normed), self.k_proj(normed), self.v_proj(normed)], dim=-1
            )
        }

    def _pair(
        self,
        tables: Dict[str, torch.Tensor],
        starts: torch.Tensor,
        ends: torch.Tensor,
        rel_starts: torch.Tensor,
        rel_ends: torch.Tensor,
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(marker inputs (2, d), queries (2, d), pair keys (2, d), pair
        scores (n, 2, h, 2), pair values (1, 2, h, hw))."""
        d, h, hw = self.width, self.n_heads, self.head_width
        marker_in, q, k, v = tables["queries"].split(d, dim=-1)
        content = torch.einsum("qhe,khe->qhk", q.view(2, h, hw), k.view(2, h, hw)) / math.sqrt(hw)
        widths = ends - starts
        zero = torch.zeros_like(widths)
        # Offset of each pair key's token from each query's boundary: (n, 2 queries, 2 keys).
        offsets = torch.stack(
            [torch.stack([zero, widths], dim=1), torch.stack([-widths, zero], dim=1)], dim=1
        )
        query_marker = torch.arange(2, device=starts.device)[None, :, None]
        bias = self.relative_bias[query_marker, :, offsets + self.n_positions - 1]  # (n, 2, 2, h)
        pair_scores = content[None] + bias.permute(0, 1, 3, 2)
        return marker_in, q, k, pair_scores, v.view(1, 2, h, hw)

    def _group_scores(
        self,
        tables: Dict[str, torch.Tensor],
        text_keys: torch.Tensor,
        text_values: torch.Tensor,
        key_index: torch.Tensor,
        query_codes: torch.Tensor,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Scores (b, h, Q, K) of the queries `query_codes` (b, Q), each
        marker * P + boundary position, over their blocks' windows (b, K)."""
        d, h, hw = self.width, self.n_heads, self.head_width
        n_blocks, n_keys = key_index.shape
        n_pos = self.n_positions
        keys = text_keys[key_index].view(n_blocks, n_keys, h, hw)
        values = text_values[key_index].view(n_blocks, n_keys, h, hw).transpose(1, 2)
        q = tables["queries"][:, d : 2 * d].reshape(2, h, hw)
        # The content part depends on the marker only: two rows per block.
        content = torch.einsum("mhe,bkhe->bmhk", q, keys) / math.sqrt(hw)  # (b, 2, h, K)
        markers, positions = query_codes // n_pos, query_codes % n_pos
        content = content[
            torch.arange(n_blocks, device=key_index.device)[:, None], markers
        ]  # (b, Q, h, K)
        offsets = (
            torch.arange(n_keys, device=key_index.device)[None, None, :]
            - positions[..., None]
            + n_pos
            - 1
        )
        bias = self.relative_bias[markers[..., None], :, offsets]  # (b, Q, K, h)
        return content.transpose(1, 2) + bias.permute(0, 3, 1, 2), values

    def _fused_terms(
        self,
        tables: Dict[str, torch.Tensor],
        key_pos: torch.Tensor,
        key_index: torch.Tensor,
        starts: torch.Tensor,
        ends: torch.Tensor,
        allowed: torch.Tensor,
    ) -> Tuple[Optional[torch.Tensor], Optional[torch.Tensor], torch.Tensor]:
        """No position terms on the text; a float mask (1, h, 2n, keys) that
        carries the relative bias of every allowed key and -inf elsewhere."""
        n = starts.shape[0]
        marker_of_row = torch.arange(2, device=starts.device).repeat(n)
        boundaries = torch.stack([starts, ends], dim=1).reshape(2 * n)
        # Offsets from each query's boundary to each key's token, in the
        # table's range wherever the mask allows the key.
        key_tokens = torch.cat([key_index, boundaries])
        offsets = (key_tokens[None, :] - boundaries[:, None] + self.n_positions - 1).clamp_(
            0, 2 * self.n_positions - 2
        )
        bias = self.relative_bias[marker_of_row[:, None], :, offsets].permute(
            2, 0, 1
        )  # (h, 2n, keys)
        return None, None, bias.masked_fill(~allowed[None], float("-inf"))[None]

    def span_head(
        self, marker_in: torch.Tensor, attended: torch.Tensor, widths: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        hidden = marker_in + self.dropout(self.o_proj(attended))
        if widths is not None:
            hidden = hidden + self.width_embed[:, widths].transpose(0, 1)
        hidden = hidden + self.dropout(self.mlp(self.norm_mlp(hidden)))
        return self.classifier(hidden.reshape(hidden.shape[0], 2 * self.width))


class AbsoluteSpanDecoder(_SpanDecoderBase):
    """SpanDec with window-absolute positions (SpanDecoder.v1).

    q_i = m_start + pos(i), q_j = m_end + pos(j), positions counted from the
    start of the span's block window; text keys add their own positions
    through `pos_key_proj` (started as `position_key_scale` times the query
    projection, so each query starts out attending to its own token), values
    through `v_proj`.
    """

    def __init__(
        self,
        width: int,
        n_classes: int,
        n_heads: int,
        mlp_ratio: float,
        dropout: float,
        n_positions: int,
        position_init: str,
        position_key_scale: float,
        budget: Optional[AttentionBudget] = None,
    ) -> None:
        super().__init__(width, n_classes, n_heads, mlp_ratio, dropout, n_positions, budget)
        self.positions = nn.Embedding(n_positions, width)
        with torch.no_grad():
            if position_init == "sinusoidal":
                self.positions.weight.copy_(sinusoidal_table(n_positions, width))
            else:
                # Same squared norm as a sinusoidal row (width / 2).
                self.positions.weight.normal_(0.0, math.sqrt(0.5))
        self.pos_key_proj = nn.Linear(width, width, bias=False)
        with torch.no_grad():
            self.pos_key_proj.weight.copy_(self.q_proj.weight * position_key_scale)

    def query_tables(self) -> Dict[str, torch.Tensor]:
        """A query is a function of (marker, window position), so its input,
        its normed Q/K/V projections and the positions' key/value
        contributions are tables over positions."""
        marker_in = torch.stack(
            [self.m_start + self.positions.weight, self.m_end + self.positions.weight]
        )  # (2, P, d)
        normed = self.norm_query(marker_in)
        return {
            "pos_keys": self.pos_key_proj(self.positions.weight),
            "pos_values": F.linear(self.positions.weight, self.v_proj.weight),
            # (2, P, 4d): [input, q, k, v] of each (marker, position) query,
            # so a span's two queries are two row lookups.
            "queries": torch.cat(
                [marker_in, self.q_proj(normed), self.k_proj(normed), self.v_proj(normed)], dim=-1
            ),
        }

    def _pair(
        self,
        tables: Dict[str, torch.Tensor],
        starts: torch.Tensor,
        ends: torch.Tensor,
        rel_starts: torch.Tensor,
        rel_ends: torch.Tensor,
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(marker inputs (n, 2, d), queries (n, 2, d), pair keys (n, 2, d),
        pair scores (n, 2, h, 2), pair values (n, 2, h, hw))."""
        n, d = starts.shape[0], self.width
        h, hw = self.n_heads, self.head_width
        queries = tables["queries"]
        n_pos = queries.shape[1]
        # One gather from the (2P, 4d) table: row p is a start query, P + p an end query.
        own = queries.reshape(2 * n_pos, 4 * d)[
            torch.stack([rel_starts, rel_ends + n_pos], dim=1)
        ]  # (n, 2, 4d)
        marker_in, q, k_pair, v_pair = own.split(d, dim=-1)
        # Two keys per query: elementwise products beat tiny batched matmuls.
        q_heads = q.reshape(n, 2, h, hw)
        k_heads = k_pair.reshape(n, 2, h, hw)
        scale = 1.0 / math.sqrt(hw)
        pair_scores = torch.stack(
            [
                (q_heads * k_heads[:, :1]).sum(dim=-1) * scale,
                (q_heads * k_heads[:, 1:]).sum(dim=-1) * scale,
            ],
            dim=-1,
        )
        return marker_in, q, k_pair, pair_scores, v_pair.reshape(n, 2, h, hw)

    def _group_scores(
        self,
        tables: Dict[str, torch.Tensor],
        text_keys: torch.Tensor,
        text_values: torch.Tensor,
        key_index: torch.Tensor,
        query_codes: torch.Tensor,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        d, h, hw = self.width, self.n_heads, self.head_width
        n_blocks, n_keys = key_index.shape
        keys = (text_keys[key_index] + tables["pos_keys"][:n_keys]).view(n_blocks, n_keys, h, hw)
        values = (text_values[key_index] + tables["pos_values"][:n_keys]).view(
            n_blocks, n_keys, h, hw
        )
        q = (
            tables["queries"][..., d : 2 * d].reshape(-1, h, hw)[query_codes].permute(0, 2, 1, 3)
        )  # (b, h, Q, hw)
        scores = torch.matmul(q, keys.permute(0, 2, 3, 1)) / math.sqrt(hw)
        return scores, values.transpose(1, 2)

    def _fused_terms(
        self,
        tables: Dict[str, torch.Tensor],
        key_pos: torch.Tensor,
        key_index: torch.Tensor,
        starts: torch.Tensor,
        ends: torch.Tensor,
        allowed: torch.Tensor,
    ) -> Tuple[Optional[torch.Tensor], Optional[torch.Tensor], torch.Tensor]:
        """The text keys' and values' window positions; a boolean mask."""
        return tables["pos_keys"][key_pos], tables["pos_values"][key_pos], allowed[None, None]


def sinusoidal_table(n_positions: int, width: int) -> torch.Tensor:
    position = torch.arange(n_positions, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, width, 2, dtype=torch.float32) * (-math.log(10000.0) / width))
    table = torch.zeros(n_positions, width)
    table[:, 0::2] = torch.sin(position * freq)
    table[:, 1::2] = torch.cos(position * freq[: width // 2])
    return table


def alibi_slopes(n_heads: int, steepest: float = 4.0) -> torch.Tensor:
    """Per-head distance penalties from `steepest` down by a factor 2**(8/H)
    per head (ALiBi's geometric series, scaled): the steep heads start out
    attending to the boundary token and its neighbours, the flat ones to the
    whole window. Offsets a model never saw in training keep this prior."""
    return steepest * torch.pow(2.0, -8.0 * torch.arange(n_heads, dtype=torch.float32) / n_heads)
