"""spacy_spandec.render and `python -m spacy_spandec render`: what users see."""

import json
import shutil
import subprocess
import sys

import pytest
import spacy
from spacy.tokens import SpanGroup

from spacy_spandec.render import pruned_spans, render


def scored_doc(nlp, text, spans):
    """A doc with doc.spans["spandec"] from (substring, label, score)."""
    doc = nlp.make_doc(text)
    chars = [(text.index(sub), text.index(sub) + len(sub), label) for sub, label, _ in spans]
    group = SpanGroup(
        doc, name="spandec", spans=[doc.char_span(s, e, label=label) for s, e, label in chars]
    )
    group.attrs["scores"] = [score for *_, score in spans]
    doc.spans["spandec"] = group
    return doc


def test_every_span_shows_its_label_and_score_overlaps_included():
    nlp = spacy.blank("en")
    # "Angela Merkel" (PER) overlaps "Angela" (LOC); odd characters stay intact.
    doc = scored_doc(
        nlp,
        "Angela Merkel met 東京 👩‍👩‍👧 in Berlin .",
        [("Angela Merkel", "PER", 0.97), ("Angela", "LOC", 0.123), ("Berlin", "LOC", 0.88)],
    )
    html = render(doc)
    for shown in ("PER 0.97", "LOC 0.12", "LOC 0.88"):
        assert html.count(shown) == 1, shown
    assert "東京" in html and "👧" in html
    assert "pruned" not in html


def test_text_is_escaped():
    nlp = spacy.blank("en")
    html = render(scored_doc(nlp, "<script>alert(1)</script> Berlin", [("Berlin", "LOC", 0.5)]))
    assert "<script>" not in html


def test_empty_and_unannotated_docs_render():
    nlp = spacy.blank("en")
    assert "spans" in render([nlp(""), nlp("no annotations here")])


def test_pruned_spans_are_what_the_span_filter_cost(trained_nlp):
    text = "Angela Merkel met Emmanuel Macron in Berlin ."
    component = trained_nlp.get_pipe("spandec_ner")
    full = trained_nlp(text)
    assert len(full.spans["spandec"]) > 0
    old = component.sf_threshold
    try:
        component.sf_threshold = 1.0  # prunes every span
        pruned_doc = trained_nlp(text)
        assert len(pruned_doc.spans["spandec"]) == 0
        pruned = pruned_spans(trained_nlp, pruned_doc)
        assert component.sf_threshold == 1.0  # restored after the unpruned run
        assert [(s, e, label) for s, e, label, _ in pruned] == [
            (s.start, s.end, s.label_) for s in full.spans["spandec"]
        ]
        html = render(pruned_doc, nlp=trained_nlp, show_pruned=True)
        assert html.count(" pruned") == len(pruned)
    finally:
        component.sf_threshold = old
    assert pruned_spans(trained_nlp, full) == []  # no pruning, nothing pruned


def test_show_pruned_needs_the_pipeline():
    nlp = spacy.blank("en")
    with pytest.raises(ValueError, match="nlp=nlp"):
        render(nlp("Berlin"), show_pruned=True)
    with pytest.raises(ValueError, match="No spandec_ner component"):
        pruned_spans(nlp, nlp("Berlin"))


def test_cli_writes_a_page_that_a_browser_opens(trained_dir, tmp_path):
    source = tmp_path / "texts.jsonl"
    source.write_text(
        "\n".join(
            json.dumps({"text": t}) for t in ["Angela Merkel met Emmanuel Macron .", "not json"]
        )
        + "\n"
    )
    out = tmp_path / "page.html"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "spacy_spandec",
            "render",
            str(trained_dir),
            str(source),
            str(out),
            "--show-pruned",
            "--sf-threshold",
            "1.0",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    html = out.read_text(encoding="utf8")
    assert html.startswith("<!DOCTYPE html>") and " pruned" in html
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("no chromium: the page was written but not opened in a browser")
    dom = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", out.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert "Merkel" in dom.stdout and " pruned" in dom.stdout
