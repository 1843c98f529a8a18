from .decoder import SpanDecNet, SpanDecoder
from .span_filter import SpanFilter, spans_to_keep
from .spandec_model import SpanDecOutput, build_spandec_model

__all__ = [
    "SpanDecNet",
    "SpanDecoder",
    "SpanFilter",
    "spans_to_keep",
    "SpanDecOutput",
    "build_spandec_model",
]
