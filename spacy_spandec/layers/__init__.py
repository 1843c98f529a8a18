from .decoder import AbsoluteSpanDecoder, RelativeSpanDecoder, SpanDecNet
from .span_filter import SpanFilter, spans_to_keep
from .spandec_model import SpanDecOutput, build_spandec_model

__all__ = [
    "SpanDecNet",
    "AbsoluteSpanDecoder",
    "RelativeSpanDecoder",
    "SpanFilter",
    "spans_to_keep",
    "SpanDecOutput",
    "build_spandec_model",
]
