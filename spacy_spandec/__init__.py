"""spacy-spandec: span-based NER for spaCy (SpanDec and SF-SpanDec)."""

from . import architectures, encoders, optimizers, scoring, token_classification  # noqa: F401  (registrations)
from .about import __version__
from .allocator import pin_mmap_threshold
from .pipeline_component import SpanDecNER, make_spandec_ner
from .render import render
from .threads import install_fork_hook

# nlp.pipe(n_process=k) forks: see spacy_spandec/threads.py.
install_fork_hook()
# Long streams: RSS stays flat (spacy_spandec/allocator.py).
pin_mmap_threshold()

__all__ = ["SpanDecNER", "make_spandec_ner", "render", "__version__"]
