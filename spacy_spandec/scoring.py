"""Scores: spaCy's ents_* and spans_<key>_*, plus the paper's seqeval F1.

Everything is computed on the predicted tokenization, with gold spans
aligned onto it, so the three metrics see the same spans.
"""
from typing import Any, Dict, Iterable, List, Optional

from seqeval.metrics import f1_score, precision_score, recall_score
from spacy.scorer import PRFScore, get_ner_prf
from spacy.tokens import Span
from spacy.training import Example
from spacy.util import registry

from .tags import spans_to_bio


def gold_spans(example: Example, gold_spans_key: Optional[str], *, aligned: bool = True) -> List[Span]:
    """The gold spans of an example: its reference doc.ents, or (nested)
    doc.spans[gold_spans_key].

    example (Example): the example.
    gold_spans_key (Optional[str]): the doc.spans key of the gold, None for doc.ents.
    aligned (bool): map the spans onto the predicted tokens, dropping those
        that do not align, as training targets and scores need. False gives
        them as annotated on the reference tokens, for what is about the
        annotation itself: its label set and its unreachable spans.
    RETURNS (List[Span]): the gold spans.
    """
    if gold_spans_key is None:
        spans = example.reference.ents
    else:
        spans = example.reference.spans.get(gold_spans_key, [])
    if not aligned:
        return list(spans)
    return list(example.get_aligned_spans_y2x(spans, allow_overlap=gold_spans_key is not None))


def seqeval_scores(examples: Iterable[Example]) -> Dict[str, float]:
    """Entity-level P/R/F1 as the paper reports it, from BIO of doc.ents."""
    gold_tags, pred_tags = [], []
    for eg in examples:
        n = len(eg.predicted)
        gold = [(s.start, s.end, s.label_) for s in eg.get_aligned_spans_y2x(eg.reference.ents)]
        pred = [(s.start, s.end, s.label_) for s in eg.predicted.ents]
        gold_tags.append(spans_to_bio(n, gold))
        pred_tags.append(spans_to_bio(n, pred))
    if not any(any(t != "O" for t in tags) for tags in gold_tags + pred_tags):
        return {"seqeval_p": None, "seqeval_r": None, "seqeval_f": None}
    return {
        "seqeval_p": float(precision_score(gold_tags, pred_tags, zero_division=0)),
        "seqeval_r": float(recall_score(gold_tags, pred_tags, zero_division=0)),
        "seqeval_f": float(f1_score(gold_tags, pred_tags, zero_division=0)),
    }


def score_ents(examples: Iterable[Example], **kwargs: Any) -> Dict[str, Any]:
    """spaCy's ents_* and the paper's seqeval P/R/F1 of doc.ents."""
    examples = list(examples)
    scores: Dict[str, Any] = dict(get_ner_prf(examples))
    scores.update(seqeval_scores(examples))
    return scores


def score_spandec(
    examples: Iterable[Example],
    *,
    spans_key: str = "spandec",
    gold_spans_key: Optional[str] = None,
    **kwargs: Any,
) -> Dict[str, Any]:
    examples = list(examples)
    scores = score_ents(examples)
    prf = PRFScore()
    n_candidates = n_kept = 0
    for eg in examples:
        gold = {(s.start, s.end, s.label_) for s in gold_spans(eg, gold_spans_key)}
        group = eg.predicted.spans.get(spans_key)
        pred = {(s.start, s.end, s.label_) for s in group} if group is not None else set()
        prf.tp += len(gold & pred)
        prf.fp += len(pred - gold)
        prf.fn += len(gold - pred)
        if group is not None:
            n_candidates += int(group.attrs.get("n_candidates", 0))
            n_kept += int(group.attrs.get("n_kept", 0))
    scores[f"spans_{spans_key}_p"] = prf.precision
    scores[f"spans_{spans_key}_r"] = prf.recall
    scores[f"spans_{spans_key}_f"] = prf.fscore
    scores[f"spans_{spans_key}_kept_fraction"] = n_kept / n_candidates if n_candidates else None
    return scores


@registry.scorers("spacy-spandec.scorer.v1")
def make_spandec_scorer():
    return score_spandec


@registry.scorers("spacy-spandec.ents_scorer.v1")
def make_ents_scorer():
    return score_ents
