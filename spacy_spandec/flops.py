"""Analytic FLOPs of each NER method, after the paper's Appendix D.

Why analytic: profilers miscount fused attention kernels, and the paper's
GFLOPs column is computed this way, so ours is comparable to it. Only the
attention and FFN matmuls are counted (embeddings, norms, activations and
output heads are <= 2%). One multiply-accumulate is 2 FLOPs.

S is the sample length in wordpieces, M the number of span-marker tokens
(two per decoded span). With the paper's MiniLM-L12 shape, S=44 and M=324,
these give its Table 3/5 figures: token classification 1.9 GFLOPs,
PL-Marker 15.8 (15.9 here), SpanDec 2.9.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class EncoderShape:
    n_layers: int
    hidden: int
    ffn: int

    @classmethod
    def from_hf_config(cls, config: object) -> "EncoderShape":
        return cls(
            int(getattr(config, "num_hidden_layers")),
            int(getattr(config, "hidden_size")),
            int(getattr(config, "intermediate_size")),
        )


def text_block(S: float, H: int, F: int) -> float:
    """One encoder block over S text tokens: Eq. 1 (self-attention) + Eq. 2 (FFN)."""
    return 8 * S * H**2 + 4 * S**2 * H + 4 * S * H * F


def marker_block(S: float, M: float, H: int, F: int) -> float:
    """One block of M marker tokens attending to S text tokens: Eq. 3 + Eq. 4."""
    return 8 * M * H**2 + 4 * S * M * H + 4 * M * H * F


def token_classification(shape: EncoderShape, S: float) -> float:
    return shape.n_layers * text_block(S, shape.hidden, shape.ffn)


def pl_marker(shape: EncoderShape, S: float, M: float) -> float:
    """Markers are packed into the encoder input and go through every layer."""
    return shape.n_layers * (
        text_block(S, shape.hidden, shape.ffn) + marker_block(S, M, shape.hidden, shape.ffn)
    )


def spandec(
    shape: EncoderShape, S: float, M: float, encoder_layers: int, kept: float = 1.0
) -> float:
    """`encoder_layers` text blocks, then one decoder block over the kept
    fraction of the markers (kept=1: SpanDec, kept<1: SF-SpanDec). The span
    filter's one linear per token is negligible.

    Our decoder computes less than this bound: marker queries come from
    per-position tables and attend to a bounded window, but the paper's
    formula is kept so the column compares with its table.
    """
    return encoder_layers * text_block(S, shape.hidden, shape.ffn) + marker_block(
        S, kept * M, shape.hidden, shape.ffn
    )


def transition_ner(
    shape: EncoderShape,
    S: float,
    hidden_width: int = 64,
    maxout_pieces: int = 2,
    n_features: int = 3,
) -> float:
    """spaCy's `ner`: the encoder plus the parser's per-token precomputed
    hidden layer (n_features x hidden_width x maxout_pieces outputs)."""
    return (
        token_classification(shape, S)
        + 2 * S * shape.hidden * n_features * hidden_width * maxout_pieces
    )
