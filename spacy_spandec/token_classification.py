"""The paper's baseline inside spaCy: BIO token classification.

spaCy's own `tagger` (a linear softmax over the same transformer listener)
predicts one BIO tag per token; `spandec_bio_ents` decodes the tags into
`doc.ents`. The reader turns gold entities into gold BIO tags on the fly,
so the baseline trains on the very same DocBin files as SpanDec.
"""

from typing import Callable, Iterable, Iterator, Optional, Union
from pathlib import Path

from spacy.language import Language
from spacy.tokens import Doc, Span
from spacy.training import Corpus, Example
from spacy.util import registry

from .scoring import ENTS_SCORE_WEIGHTS
from .tags import bio_to_spans, spans_to_bio


@registry.readers("spacy-spandec.BIOCorpus.v1")
def create_bio_corpus(
    path: Optional[Union[str, Path]],
    *,
    gold_preproc: bool = False,
    max_length: int = 0,
    limit: int = 0,
) -> Callable[[Language], Iterable[Example]]:
    """spacy.Corpus.v1 whose gold docs also carry BIO tags of their entities."""
    corpus = Corpus(path, gold_preproc=gold_preproc, max_length=max_length, limit=limit)

    def read(nlp: Language) -> Iterator[Example]:
        for eg in corpus(nlp):
            reference = eg.reference
            spans = [(e.start, e.end, e.label_) for e in reference.ents]
            for token, tag in zip(reference, spans_to_bio(len(reference), spans)):
                token.tag_ = tag
            yield eg

    return read


@Language.factory(
    "spandec_bio_ents",
    assigns=["doc.ents"],
    requires=["token.tag"],
    default_config={"scorer": {"@scorers": "spacy-spandec.ents_scorer.v1"}},
    default_score_weights=ENTS_SCORE_WEIGHTS,
)
def make_bio_ents(nlp: Language, name: str, scorer: Optional[Callable]) -> "BIOEntities":
    return BIOEntities(name, scorer)


class BIOEntities:
    """Set doc.ents from BIO tags in token.tag_ (an I-X that does not continue
    an X entity starts one, as seqeval and conlleval read it)."""

    def __init__(self, name: str, scorer: Optional[Callable]) -> None:
        self.name = name
        self.scorer = scorer

    def __call__(self, doc: Doc) -> Doc:
        tags = [token.tag_ if token.tag_ else "O" for token in doc]
        doc.ents = [Span(doc, s, e, label=label) for s, e, label in bio_to_spans(tags)]
        return doc

    def score(self, examples: Iterable[Example], **kwargs) -> dict:
        return self.scorer(examples) if self.scorer is not None else {}
