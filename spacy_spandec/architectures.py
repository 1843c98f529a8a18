"""Registered architectures: the versioned names that configs refer to."""

from typing import List

from spacy.tokens import Doc
from spacy.util import registry
from thinc.api import Model
from thinc.types import Floats2d

from .layers.decoder import POSITION_INITS
from .layers.spandec_model import SpanDecOutput, build_spandec_model


@registry.architectures("spacy-spandec.SpanDecoder.v2")
def build_span_decoder(
    tok2vec: Model[List[Doc], List[Floats2d]],
    max_span_length: int = 8,
    n_heads: int = 12,
    mlp_ratio: float = 4.0,
    dropout: float = 0.1,
    context_window: int = 64,
    block_size: int = 64,
    span_filter: bool = True,
    mixed_precision: bool = False,
) -> Model[List[Doc], SpanDecOutput]:
    """SpanDec (paper section 4) with an optional span filter (section 4.1),
    with relative positions: each boundary query scores a key by their
    offset, not by where the span sits in its window, so a model trained on
    sentences decodes whole documents (v1 did not).

    tok2vec (Model[List[Doc], List[Floats2d]]): one vector per token, e.g. a
        spacy-transformers TransformerListener.
    max_span_length (int): longest candidate span, in tokens.
    n_heads (int): attention heads of the cross-attention layer (divides the width).
    mlp_ratio (float): hidden size of the MLP as a multiple of the width (paper: 4).
    dropout (float): dropout on the attention output, inside and after the MLP.
    context_window (int): tokens of context on each side of a block of spans;
        docs no longer than block_size + context_window are attended to in full
        when context_window >= block_size (the default: 64 and 64).
    block_size (int): span starts decoded together against one shared token window.
    span_filter (bool): add the SF token classifier (needed for SF-SpanDec pruning).
    mixed_precision (bool): autocast the decoder on GPU, as spacy-transformers does.
    RETURNS (Model[List[Doc], SpanDecOutput]): the span decoder.
    """
    _check_shape(max_span_length, n_heads, block_size, context_window, dropout, mlp_ratio)
    return build_spandec_model(
        tok2vec,
        max_span_length=max_span_length,
        n_heads=n_heads,
        mlp_ratio=mlp_ratio,
        dropout=dropout,
        context_window=context_window,
        block_size=block_size,
        span_filter=span_filter,
        mixed_precision=mixed_precision,
        positions="relative",
    )


@registry.architectures("spacy-spandec.SpanDecoder.v1")
def build_span_decoder_v1(
    tok2vec: Model[List[Doc], List[Floats2d]],
    max_span_length: int = 8,
    n_heads: int = 12,
    mlp_ratio: float = 4.0,
    dropout: float = 0.1,
    context_window: int = 64,
    block_size: int = 64,
    span_filter: bool = True,
    mixed_precision: bool = False,
    position_init: str = "sinusoidal",
    position_key_scale: float = 1.0,
) -> Model[List[Doc], SpanDecOutput]:
    """The paper's SpanDec with window-absolute query positions
    (q_i = m_start + pos(i)). Kept so that pipelines trained with it load and
    predict as before; new models should use SpanDecoder.v2, since v1 trained
    on sentences fails on longer texts (its position table only learns the
    first rows).

    position_init (str): initial position table, "sinusoidal" or "random".
    position_key_scale (float): initial scale of the position part of the
        text keys relative to the query projection.
    The other arguments are those of SpanDecoder.v2.
    """
    if position_init not in POSITION_INITS:
        raise ValueError(
            f"position_init must be one of {list(POSITION_INITS)}, got {position_init!r}."
        )
    if position_key_scale <= 0:
        raise ValueError(f"position_key_scale must be positive, got {position_key_scale}.")
    model = build_span_decoder(
        tok2vec,
        max_span_length,
        n_heads,
        mlp_ratio,
        dropout,
        context_window,
        block_size,
        span_filter,
        mixed_precision,
    )
    # The PyTorch net is built from these attrs at initialization (net_config).
    model.attrs.update(
        positions="absolute", position_init=position_init, position_key_scale=position_key_scale
    )
    return model


def _check_shape(
    max_span_length: int,
    n_heads: int,
    block_size: int,
    context_window: int,
    dropout: float,
    mlp_ratio: float,
) -> None:
    if max_span_length < 1:
        raise ValueError(
            f"max_span_length must be at least 1 token, got {max_span_length}. "
            "Set [components.<name>.model] max_span_length to a positive integer (default 8)."
        )
    for name, value in (("n_heads", n_heads), ("block_size", block_size)):
        if value < 1:
            raise ValueError(f"{name} must be at least 1, got {value}.")
    if context_window < 0:
        raise ValueError(f"context_window must be >= 0 tokens, got {context_window}.")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}.")
    if mlp_ratio <= 0:
        raise ValueError(f"mlp_ratio must be positive, got {mlp_ratio}.")
