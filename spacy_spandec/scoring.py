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

# The score weights of both NER components: `spacy train` picks model-best by ents_f
# and reports the rest.
ENTS_SCORE_WEIGHTS: Dict[str, Optional[float]] = {
    "ents_f": 1.0,
    "ents_p": 0.0,
    "ents_r": 0.0,
    "ents_per_type": None,
    "seqeval_f": 0.0,
}


def gold_spans(
    example: Example, gold_spans_key: Optional[str], *, aligned: bool = True
) -> List[Span]:
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


RELIABILITY_BINS = 10


def reliability(
    confidences: List[float], correct: List[bool], n_bins: int = RELIABILITY_BINS
) -> Dict[str, Any]:
    """Expected calibration error and the reliability table of predicted
    spans: is a span scored 0.9 right 90% of the time? Equal-width bins of
    the score; ECE is the mean |accuracy - confidence| weighted by bin size.

    confidences (List[float]): the score of each predicted span.
    correct (List[bool]): whether that span (start, end, label) is gold.
    RETURNS (Dict[str, Any]): {"ece": float or None, "bins": [{lo, hi, n, confidence, accuracy}]}.
    """
    bins = []
    total, ece = len(confidences), 0.0
    for i in range(n_bins):
        lo, hi = i / n_bins, (i + 1) / n_bins
        members = [
            (c, ok)
            for c, ok in zip(confidences, correct)
            if lo <= c < hi or (i == n_bins - 1 and c == hi)
        ]
        if not members:
            bins.append({"lo": lo, "hi": hi, "n": 0, "confidence": None, "accuracy": None})
            continue
        confidence = sum(c for c, _ in members) / len(members)
        accuracy = sum(ok for _, ok in members) / len(members)
        ece += len(members) / total * abs(accuracy - confidence)
        bins.append(
            {"lo": lo, "hi": hi, "n": len(members), "confidence": confidence, "accuracy": accuracy}
        )
    return {"ece": ece if total else None, "bins": bins}


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
    confidences: List[float] = []
    correct: List[bool] = []
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
            for span, score in zip(group, group.attrs.get("scores", [])):
                confidences.append(float(score))
                correct.append((span.start, span.end, span.label_) in gold)
    scores[f"spans_{spans_key}_p"] = prf.precision
    scores[f"spans_{spans_key}_r"] = prf.recall
    scores[f"spans_{spans_key}_f"] = prf.fscore
    scores[f"spans_{spans_key}_kept_fraction"] = n_kept / n_candidates if n_candidates else None
    calibration = reliability(confidences, correct)
    scores[f"spans_{spans_key}_ece"] = calibration["ece"]
    scores[f"spans_{spans_key}_reliability"] = calibration["bins"]
    return scores


@registry.scorers("spacy-spandec.scorer.v1")
def make_spandec_scorer():
    return score_spandec


@registry.scorers("spacy-spandec.ents_scorer.v1")
def make_ents_scorer():
    return score_ents
