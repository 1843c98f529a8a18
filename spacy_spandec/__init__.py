"""spacy-spandec: span-based NER for spaCy (SpanDec and SF-SpanDec)."""
from . import architectures, encoders, optimizers, scoring, token_classification  # noqa: F401  (registrations)
from .about import __version__
from .pipeline_component import SpanDecNER, make_spandec_ner
from .threads import install_fork_hook

# nlp.pipe(n_process=k) forks: see spacy_spandec/threads.py.
install_fork_hook()

__all__ = ["SpanDecNER", "make_spandec_ner", "__version__"]
