"""Cheaper precisions for serving on CPU: int8 dynamic quantization and bf16.

On CPU the unpruned decoder's cost is dominated by Linear layers applied to
every span (the attention output projection, the MLP and the classifier): in
float32 they run near the CPU's peak FLOP rate, so only fewer bits make them
cheaper. Those layers are what the `int8` setting quantizes and what the
`bfloat16` setting runs in bf16 (weights cast once; AMX/AVX512-BF16 CPUs run
them about twice as fast). Everything else (the per-token projections, which
share their weights with position tables, and the attention arithmetic)
stays float32, so bf16 rounding touches only the layers that pay for it.

Every setting, float32 included, predicts through an inference-only view
that computes the decoder's weight-only tables (query projections per
position) once instead of once per batch. Training and serialization always
use the float32 weights, and a view is rebuilt after the weights change.
"""

import copy
import warnings
import weakref
from contextlib import contextmanager
from typing import Any, Dict, Iterable, Iterator, List, Tuple

import torch
from spacy.language import Language
from torch import nn

from .layers.decoder import DECODER_PREFIX, PER_SPAN_LINEARS, SpanDecNet

INFERENCE_DTYPES = ("float32", "bfloat16", "int8")

_VIEWS: "weakref.WeakKeyDictionary[nn.Module, Dict[str, Any]]" = weakref.WeakKeyDictionary()


def check_inference_dtype(value: Any) -> str:
    if value not in INFERENCE_DTYPES:
        raise ValueError(
            f"inference_dtype must be one of {list(INFERENCE_DTYPES)}, got {value!r}. "
            "Use 'int8' (dynamic quantization of the per-span Linear layers) or "
            "'bfloat16' (the same layers in bf16, for CPUs with AMX/AVX512-BF16) "
            "to serve faster on CPU, 'float32' otherwise."
        )
    return value


class _Bfloat16(nn.Module):
    """A module run with bf16 weights: float32 in, float32 out."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module.to(torch.bfloat16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x.to(torch.bfloat16)).float()

    def __getattr__(self, name: str) -> Any:
        # Attributes the decoder reads (e.g. classifier.out_features).
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self._modules["module"], name)


def bfloat16_decoder(net: nn.Module) -> nn.Module:
    """A copy of a SpanDecNet whose per-span Linear layers (and the MLP's
    GELU between them) run in bf16."""
    converted = copy.deepcopy(net)
    decoder = converted.decoder
    for name in {name.split(".")[0] for name in PER_SPAN_LINEARS}:
        setattr(decoder, name, _Bfloat16(getattr(decoder, name)))
    converted.eval()
    return converted


@contextmanager
def _quiet_quantization() -> Iterator[None]:
    """torch.ao's eager quantization warns that it will move to torchao; the
    API is still the supported one in the pinned torch."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", module=r"torch\.ao\..*")
        warnings.filterwarnings("ignore", message=r".*(torchao|quantiz).*")
        yield


def quantize_decoder(net: nn.Module) -> nn.Module:
    """A copy of a SpanDecNet whose per-span Linear layers are dynamic int8."""
    names = {
        name
        for name, module in net.named_modules()
        if isinstance(module, nn.Linear)
        and name.startswith(DECODER_PREFIX)
        and name[len(DECODER_PREFIX) :] in PER_SPAN_LINEARS
    }
    with _quiet_quantization():
        quantized = torch.ao.quantization.quantize_dynamic(
            copy.deepcopy(net), names, dtype=torch.qint8
        )
    quantized.eval()
    return quantized


class _FrozenTables(nn.Module):
    """Predict with the decoder's weight-only tables (`SpanDecoder.query_tables`)
    computed once for this view, not once per batch: at small batch sizes
    they are a large share of an SF-pruned decoder's work."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        self.config = getattr(net, "config", None)
        self._tables: Dict[Tuple[bool, torch.dtype], Dict[str, torch.Tensor]] = {}
        # A device move changes the parameters' data pointers, which makes
        # serving_view build a new view: the device type is fixed per view.
        self._device_type = next(net.parameters()).device.type

    def train(self, mode: bool = True) -> "_FrozenTables":
        """A view only predicts: Thinc's shim calls eval() before and train()
        after every batch, and each call walks every submodule. Switch the
        net to eval once (again only if training switched it back) and
        ignore train(); training uses the net itself, never the view."""
        if not mode and self.net.training:
            super().train(False)
        return self

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        device_type = self._device_type
        # Tables made under bf16 autocast are bf16: one set per autocast state.
        key = (torch.is_autocast_enabled(device_type), torch.get_autocast_dtype(device_type))
        if key not in self._tables:
            with torch.no_grad():
                self._tables[key] = self.net.decoder.query_tables()
        return self.net(*args, query_tables=self._tables[key], **kwargs)


def _fingerprint(params: List[nn.Parameter]) -> Tuple[Tuple[int, int], ...]:
    """Changes when torch modifies a parameter in place or moves its data."""
    return tuple((p.data_ptr(), p._version) for p in params)


def serving_view(net: nn.Module, dtype: str) -> nn.Module:
    """The net to predict with in `dtype`, with its weight-only tables computed
    once; cached until `invalidate(net)` (which the component's
    `finish_update` calls) or until torch changes a parameter's data."""
    check_inference_dtype(dtype)
    if not isinstance(net, SpanDecNet):
        return net
    views = _VIEWS.get(net)
    if views is None:
        # The parameter list is walked once per net, not once per batch.
        # Replacing a Parameter object (not its data) needs invalidate(net).
        views = _VIEWS[net] = {"params": list(net.parameters())}
    fingerprint = _fingerprint(views["params"])
    if views.get("fingerprint") != fingerprint:
        views = _VIEWS[net] = {"params": views["params"], "fingerprint": fingerprint}
    if dtype not in views:
        if dtype == "int8":
            views[dtype] = _FrozenTables(quantize_decoder(net))
        elif dtype == "bfloat16":
            views[dtype] = _FrozenTables(bfloat16_decoder(net))
        else:
            views[dtype] = _FrozenTables(net)
    return views[dtype]


def invalidate(net: nn.Module) -> None:
    """Forget the views of a net whose weights have changed."""
    _VIEWS.pop(net, None)


def transformer_modules(nlp: Language) -> List[Tuple[str, nn.Module]]:
    """(component name, Hugging Face model) of every spacy-transformers pipe."""
    found: List[Tuple[str, nn.Module]] = []
    seen = set()
    for name, pipe in nlp.pipeline:
        model = getattr(pipe, "model", None)
        for node in model.walk() if model is not None else ():
            for shim in getattr(node, "shims", ()):
                module = getattr(shim, "_model", None)
                is_hf = isinstance(module, nn.Module) and hasattr(
                    getattr(module, "config", None), "hidden_size"
                )
                if is_hf and id(module) not in seen:
                    seen.add(id(module))
                    found.append((name, module))
    return found


def quantize_encoder(nlp: Language, names: Iterable[str] = ()) -> List[str]:
    """Quantize the Linear layers of the pipeline's transformer(s) to dynamic
    int8, in place, for serving. Embeddings and LayerNorms stay float, which is
    the setting PyTorch documents for BERT.

    In place means the pipeline must not be saved afterwards (reload the float
    one instead): returns the names of the quantized components.
    """
    wanted = set(names)
    done = []
    for name, module in transformer_modules(nlp):
        if wanted and name not in wanted:
            continue
        with _quiet_quantization():
            torch.ao.quantization.quantize_dynamic(
                module, {nn.Linear}, dtype=torch.qint8, inplace=True
            )
        done.append(name)
    if wanted - set(done):
        raise ValueError(
            f"No spacy-transformers model found in components {sorted(wanted - set(done))}; "
            f"the pipeline's transformer components are {[n for n, _ in transformer_modules(nlp)]}."
        )
    return done
