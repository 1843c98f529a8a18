"""See what the component predicts: displaCy's span style, with the label and
score on every span of `doc.spans[key]`, overlapping spans included, and
optionally the spans the span filter pruned that SpanDec would have predicted.

displaCy's `ent` style shows only the flat `doc.ents` and no scores; the span
style draws overlapping spans but takes labels only, so the score goes into
the label text and each scored label gets its base label's colour.
"""

from contextlib import contextmanager
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

from spacy import displacy
from spacy.displacy.render import DEFAULT_LABEL_COLORS
from spacy.language import Language
from spacy.tokens import Doc

from .pipeline_component import SpanDecNER, spandec_components

# Colours for labels displaCy has none for (benchmark labels such as PER, Chemical).
PALETTE = (
    "#7aecec",
    "#bfeeb7",
    "#feca74",
    "#ff9561",
    "#aa9cfc",
    "#c887fb",
    "#9cc9cc",
    "#ffeb80",
    "#e4e7d2",
    "#f0d0ff",
)
PRUNED_COLOR = "#dddddd"

SpanInfo = Tuple[int, int, str, float]  # start token, end token (exclusive), label, score


def scored_spans(doc: Doc, spans_key: str = "spandec") -> List[SpanInfo]:
    """The spans of doc.spans[spans_key] with their scores (1.0 when the group
    carries none, e.g. gold spans)."""
    group = doc.spans.get(spans_key)
    if group is None:
        return []
    scores = group.attrs.get("scores") or [1.0] * len(group)
    return [(span.start, span.end, span.label_, float(score)) for span, score in zip(group, scores)]


@contextmanager
def _sf_threshold(component: SpanDecNER, value: float) -> Iterator[None]:
    old = component.sf_threshold
    component.sf_threshold = value
    try:
        yield
    finally:
        component.sf_threshold = old


def pruned_spans(nlp: Language, doc: Doc, component: Optional[str] = None) -> List[SpanInfo]:
    """Spans that SpanDec predicts for doc's text with every candidate decoded
    (sf_threshold 0) but that are missing from doc's own prediction: the
    entities the span filter cost. Empty when the pipeline does not prune."""
    _, pipe = _component(nlp, component)
    if pipe.sf_threshold <= 0:
        return []
    with _sf_threshold(pipe, 0.0):
        full = nlp(doc.text)
    kept = {(start, end, label) for start, end, label, _ in scored_spans(doc, pipe.spans_key)}
    return [s for s in scored_spans(full, pipe.spans_key) if s[:3] not in kept]


def _component(nlp: Language, name: Optional[str]) -> Tuple[str, SpanDecNER]:
    components = spandec_components(nlp)
    if name is not None:
        components = [(n, p) for n, p in components if n == name]
    if not components:
        raise ValueError(
            f"No spandec_ner component{'' if name is None else ' named ' + repr(name)} in the pipeline "
            f"{nlp.pipe_names}: render a pipeline trained with spacy-spandec."
        )
    return components[0]


def _colors(labels: Iterable[str]) -> Dict[str, str]:
    colors: Dict[str, str] = {}
    for i, label in enumerate(sorted(set(labels))):
        colors[label] = DEFAULT_LABEL_COLORS.get(label.upper(), PALETTE[i % len(PALETTE)])
    return colors


def render_data(
    doc: Doc, spans: Sequence[SpanInfo], pruned: Sequence[SpanInfo] = ()
) -> Tuple[Dict[str, Any], Dict[str, str]]:
    """displaCy's manual span data for doc, each label reading "LABEL 0.97"
    (pruned ones "LABEL 0.91 pruned"), and the colour of every such label."""
    base = _colors([label for _, _, label, _ in list(spans) + list(pruned)])
    items, colors = [], {}
    for group, suffix in ((spans, ""), (pruned, " pruned")):
        for start, end, label, score in group:
            shown = f"{label} {score:.2f}{suffix}"
            colors[shown] = PRUNED_COLOR if suffix else base[label]
            items.append(
                {
                    "start_token": start,
                    "end_token": end,
                    "label": shown,
                    "start": doc[start].idx,
                    "end": doc[end - 1].idx + len(doc[end - 1]),
                }
            )
    items.sort(key=lambda s: (s["start_token"], -s["end_token"]))
    data = {
        "text": doc.text,
        "spans": items,
        "tokens": [t.text for t in doc],
        "title": doc.user_data.get("title"),
    }
    return data, colors


def render(
    docs: Any,
    spans_key: str = "spandec",
    *,
    nlp: Optional[Language] = None,
    show_pruned: bool = False,
    page: bool = False,
    jupyter: Optional[bool] = None,
) -> str:
    """Render one doc or a list of docs as HTML (displaCy's span style), with
    the label and score on each span of doc.spans[spans_key].

    docs (Doc | Iterable[Doc]): docs annotated by a pipeline with spandec_ner.
    spans_key (str): the span group to draw; the component's `spans_key`.
    nlp (Language): the pipeline that annotated the docs; needed for show_pruned.
    show_pruned (bool): also draw, in grey, the spans the span filter pruned
        that SpanDec would have predicted with every candidate decoded.
    page (bool): a whole HTML page rather than a fragment.
    jupyter (bool): display in a notebook (displaCy's setting; None = detect).
    RETURNS (str): the HTML.
    """
    docs = [docs] if isinstance(docs, Doc) else list(docs)
    if show_pruned and nlp is None:
        raise ValueError("show_pruned needs the pipeline: render(docs, nlp=nlp, show_pruned=True).")
    parsed, colors = [], {}
    for doc in docs:
        pruned = pruned_spans(nlp, doc) if show_pruned else []
        data, doc_colors = render_data(doc, scored_spans(doc, spans_key), pruned)
        parsed.append(data)
        colors.update(doc_colors)
    return displacy.render(
        parsed, style="span", manual=True, page=page, jupyter=jupyter, options={"colors": colors}
    )
