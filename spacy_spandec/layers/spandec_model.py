"""Thinc wiring: token vectors from any tok2vec -> the PyTorch span decoder.

The model maps `List[Doc]` to a `SpanDecOutput`. Candidate enumeration and
attention blocks are computed with numpy (`candidates.py`); the PyTorch net
is wrapped with `PyTorchWrapper_v3`, so `spacy train`, the optimizer,
gradient accumulation, serialization and `--gpu-id` go through the normal
Thinc machinery. Weights are stored as safetensors inside msgpack: loading a
pipeline never unpickles anything.
"""

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, List, Optional, Tuple

import numpy
import srsly
import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors
from spacy.tokens import Doc
from thinc.api import (
    ArgsKwargs,
    Model,
    PyTorchWrapper_v3,
    get_torch_default_device,
    torch2xp,
    xp2torch,
)
from thinc.types import Floats1d, Floats2d

from ..candidates import Candidates, attention_blocks, enumerate_candidates, max_window_length
from .decoder import DECODER_PREFIX, MLP_IN, build_net, mlp_width, position_scheme


@dataclass
class SpanDecOutput:
    """Predictions for the decoded spans of a batch.

    Span arrays are numpy, doc-local token offsets (`ends` exclusive), one row
    per decoded (kept) span. `logits` and `token_logits` stay on the model's
    device so the loss can be computed there.
    """

    lengths: numpy.ndarray
    doc_ids: numpy.ndarray
    starts: numpy.ndarray
    ends: numpy.ndarray
    logits: Floats2d
    token_logits: Floats1d
    n_candidates: numpy.ndarray  # per doc
    n_kept: numpy.ndarray  # per doc
    sampled: bool = False  # a SampledDocs rule chose the decoded spans (training)


class SampledDocs(list):
    """A training batch of docs with a rule for which candidates to decode.

    `keep(candidates, offsets)` returns a boolean mask over the batch's
    candidates (`offsets`: each doc's first token in the batch). The component
    passes one to decode a sample of the O spans instead of all of them; to the
    tok2vec it is the plain list of docs it holds.
    """

    def __init__(
        self, docs: Iterable[Doc], keep: Callable[[Candidates, numpy.ndarray], numpy.ndarray]
    ) -> None:
        super().__init__(docs)
        self.keep = keep


class SpanDecoderLoadError(ValueError):
    pass


def serialize_net(net: torch.nn.Module) -> bytes:
    config = getattr(net, "config", None)
    weights = (
        save_safetensors({k: v.contiguous() for k, v in net.state_dict().items()})
        if config
        else b""
    )
    return srsly.msgpack_dumps({"config": config, "weights": weights})


def deserialize_net(net: torch.nn.Module, data: bytes, device: "torch.device") -> torch.nn.Module:
    try:
        msg = srsly.msgpack_loads(data)
        config = msg["config"]
        if config is None:
            return net
        state = load_safetensors(msg["weights"])
        _check_config_against_weights(config, state)
        new_net = build_net(config)
        new_net.load_state_dict(state)
    except (SafetensorError, ValueError, KeyError, TypeError, RuntimeError, AttributeError) as err:
        raise SpanDecoderLoadError(
            "The span decoder weights are corrupt, truncated or do not match the "
            f"model's config ({type(err).__name__}: {err}). Re-save the pipeline "
            "with nlp.to_disk() or re-train it; the file was not loaded."
        ) from None
    return new_net.to(device)


def _check_config_against_weights(config: dict, state: dict) -> None:
    """Refuse a config whose shapes disagree with the stored tensors before
    building anything: the tensors' sizes are bounded by the file, a tampered
    config's (e.g. width = 10**9) are not."""
    width, n_positions = int(config["width"]), int(config["n_positions"])
    expected = {
        "m_start": (width,),
        "classifier.weight": (int(config["n_classes"]), 2 * width),
        f"{MLP_IN}.weight": (mlp_width(width, float(config["mlp_ratio"])), width),
    }
    if position_scheme(config) == "relative":
        expected["relative_bias"] = (2, int(config["n_heads"]), 2 * n_positions - 1)
        expected["width_embed"] = (2, int(config["max_span_length"]), width)
    else:
        expected["positions.weight"] = (n_positions, width)
    for name, shape in expected.items():
        actual = tuple(state[DECODER_PREFIX + name].shape)
        if actual != shape:
            raise ValueError(f"config expects {name} of shape {shape}, the weights have {actual}")


def build_spandec_model(
    tok2vec: Model[List[Doc], List[Floats2d]],
    *,
    max_span_length: int,
    n_heads: int,
    mlp_ratio: float,
    dropout: float,
    context_window: int,
    block_size: int,
    span_filter: bool,
    mixed_precision: bool,
    positions: str,
) -> Model[List[Doc], SpanDecOutput]:
    """The Thinc model around the PyTorch net. `positions` is "relative"
    (SpanDecoder.v2) or "absolute" (v1, whose architecture also sets the
    position_init and position_key_scale attrs)."""
    wrapper = PyTorchWrapper_v3(
        build_net(None),
        convert_inputs=_convert_inputs,
        convert_outputs=_convert_outputs,
        mixed_precision=mixed_precision,
        serialize_model=serialize_net,
        deserialize_model=deserialize_net,
    )
    return Model(
        "spandec",
        forward,
        init=init,
        layers=[tok2vec, wrapper],
        refs={"tok2vec": tok2vec, "decoder": wrapper},
        dims={"nI": None, "nO": None},
        attrs={
            "max_span_length": max_span_length,
            "n_heads": n_heads,
            "mlp_ratio": mlp_ratio,
            "dropout": dropout,
            "context_window": context_window,
            "block_size": block_size,
            "span_filter": span_filter,
            "sf_threshold": 0.0,
            "positions": positions,
            "position_init": None,
            "position_key_scale": None,
        },
    )


def net_config(model: Model) -> dict:
    """The shapes and settings the PyTorch net is built from (and saved with)."""
    attrs = model.attrs
    config = {
        "width": model.get_dim("nI"),
        "n_classes": model.get_dim("nO"),
        "n_heads": attrs["n_heads"],
        "mlp_ratio": attrs["mlp_ratio"],
        "dropout": attrs["dropout"],
        "n_positions": max_window_length(
            attrs["max_span_length"], attrs["block_size"], attrs["context_window"]
        ),
        "span_filter": attrs["span_filter"],
        "positions": attrs["positions"],
    }
    if attrs["positions"] == "relative":
        config["max_span_length"] = attrs["max_span_length"]
    else:
        config["position_init"] = attrs["position_init"]
        config["position_key_scale"] = attrs["position_key_scale"]
    return config


def decoder_net(model: Model) -> torch.nn.Module:
    """The PyTorch net inside the model's Thinc wrapper."""
    return model.get_ref("decoder").shims[0]._model


@contextmanager
def using_net(model: Model, net: torch.nn.Module) -> Iterator[None]:
    """Predict with `net` (e.g. a quantized view) in place of the decoder net."""
    shim = model.get_ref("decoder").shims[0]
    original = shim._model
    shim._model = net
    try:
        yield
    finally:
        shim._model = original


def is_built(model: Model) -> bool:
    return getattr(decoder_net(model), "config", None) is not None


def build_decoder(model: Model) -> None:
    """Create the PyTorch net now that nI (token width) and nO are known."""
    shim = model.get_ref("decoder").shims[0]
    shim._model = build_net(net_config(model)).to(get_torch_default_device())


def init(model: Model, X: Optional[List[Doc]] = None, Y: Any = None) -> Model:
    tok2vec = model.get_ref("tok2vec")
    if X is not None:
        tok2vec.initialize(X=X)
    else:
        tok2vec.initialize()
    if not model.has_dim("nI") or model.get_dim("nI") is None:
        width = _infer_width(tok2vec, X)
        model.set_dim("nI", width)
    if not model.has_dim("nO") or model.get_dim("nO") is None:
        raise ValueError(
            "Cannot initialize the span decoder without its labels: call "
            "nlp.initialize() with training examples or pass labels."
        )
    build_decoder(model)
    return model


def _infer_width(tok2vec: Model, X: Optional[List[Doc]]) -> int:
    if tok2vec.has_dim("nO") and tok2vec.get_dim("nO"):
        return int(tok2vec.get_dim("nO"))
    for node in tok2vec.walk():
        if node.has_dim("nO") is True:
            return int(node.get_dim("nO"))
    if X:
        for vectors in tok2vec.predict(X):
            return int(vectors.shape[1])
    raise ValueError(
        "Cannot infer the token vector width for spandec_ner: the tok2vec layer "
        "has no 'nO' and no sample docs were given to initialize()."
    )


def forward(model: Model, docs: List[Doc], is_train: bool) -> Tuple[SpanDecOutput, Callable]:
    tok2vec = model.get_ref("tok2vec")
    wrapper = model.get_ref("decoder")
    attrs = model.attrs
    ops = model.ops
    max_len = attrs["max_span_length"]
    block_size = attrs["block_size"]
    lengths = numpy.asarray([len(doc) for doc in docs], dtype="int64")
    offsets = numpy.concatenate([[0], numpy.cumsum(lengths)[:-1]]).astype("int64")
    is_space = numpy.concatenate(
        [doc.to_array("IS_SPACE") for doc in docs] + [numpy.zeros((0,), dtype="uint64")]
    ).astype(bool)
    cands = enumerate_candidates(lengths, max_len).without_space_boundaries(is_space, offsets)
    n_candidates = numpy.bincount(cands.doc_ids, minlength=len(docs)).astype("int64")
    sampled = is_train and isinstance(docs, SampledDocs)
    if sampled:
        cands = cands.select(numpy.asarray(docs.keep(cands, offsets), dtype=bool))
    if int(lengths.sum()) == 0:
        empty = numpy.zeros((0,), dtype="int64")
        output = SpanDecOutput(
            lengths,
            empty,
            empty,
            empty,
            ops.alloc2f(0, model.get_dim("nO")),
            ops.alloc1f(0),
            n_candidates,
            numpy.zeros(len(docs), dtype="int64"),
        )
        # Nothing to encode or decode: the tok2vec is not run at all, since a
        # transformer listener cannot pool a batch without any token.
        return output, lambda d_output: []
    vectors, backprop_tok2vec = tok2vec(docs, is_train)
    blocks = attention_blocks(lengths, max_len, block_size, attrs["context_window"])
    flat = ops.flatten(vectors)
    threshold = 0.0 if is_train else float(attrs["sf_threshold"])
    inputs = {
        "tokens": flat,
        "starts": offsets[cands.doc_ids] + cands.starts,
        "ends": offsets[cands.doc_ids] + cands.ends - 1,
        "span_blocks": blocks.block_of(cands, block_size),
        "window_starts": offsets[blocks.doc_ids] + blocks.window_starts,
        "window_lengths": blocks.window_lengths,
        "sf_threshold": threshold,
    }
    (logits, token_logits, kept), backprop_wrapper = wrapper(inputs, is_train)
    kept = numpy.asarray(ops.to_numpy(kept), dtype="int64")
    doc_ids = cands.doc_ids[kept]
    output = SpanDecOutput(
        lengths=lengths,
        doc_ids=doc_ids,
        starts=cands.starts[kept],
        ends=cands.ends[kept],
        logits=logits,
        token_logits=token_logits,
        n_candidates=n_candidates,
        n_kept=numpy.bincount(doc_ids, minlength=len(docs)).astype("int64"),
        sampled=sampled,
    )

    def backprop(d_output: Tuple[Floats2d, Optional[Floats1d]]) -> Any:
        d_flat = backprop_wrapper(d_output)
        return backprop_tok2vec(ops.unflatten(d_flat, lengths.tolist()))

    return output, backprop


def _convert_inputs(model: Model, X: dict, is_train: bool) -> Tuple[ArgsKwargs, Callable]:
    device = model.shims[0].device
    tokens = xp2torch(X["tokens"], requires_grad=is_train, device=device)
    kwargs = {"tokens": tokens, "sf_threshold": X["sf_threshold"]}
    for key in ("starts", "ends", "span_blocks", "window_starts", "window_lengths"):
        kwargs[key] = torch.as_tensor(numpy.asarray(X[key], dtype="int64"), device=device)

    def reverse(d_inputs: ArgsKwargs) -> Floats2d:
        grad = d_inputs.kwargs["tokens"]
        if grad is None:
            return model.ops.alloc2f(*X["tokens"].shape)
        return torch2xp(grad)

    return ArgsKwargs(args=(), kwargs=kwargs), reverse


def _convert_outputs(model: Model, X_Ytorch: Any, is_train: bool) -> Tuple[Any, Callable]:
    _, (logits, token_logits, kept) = X_Ytorch
    device = model.shims[0].device
    Y = (torch2xp(logits), torch2xp(token_logits), kept.cpu().numpy())

    def reverse(dY: Tuple[Floats2d, Optional[Floats1d]]) -> ArgsKwargs:
        d_logits, d_token_logits = dY
        tensors, grads = [logits], [xp2torch(d_logits, device=device)]
        if d_token_logits is not None and token_logits.requires_grad:
            tensors.append(token_logits)
            grads.append(xp2torch(d_token_logits, device=device))
        return ArgsKwargs(args=(tensors,), kwargs={"grad_tensors": grads})

    return Y, reverse
