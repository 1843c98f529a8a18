"""spacy_spandec.scoring: the calibration of span scores."""

import pytest
from spacy.training import Example

from spacy_spandec.scoring import reliability

from conftest import make_examples


def test_reliability_by_hand():
    # Bin [0.5, 0.6): 2 spans at 0.55, both right; bin [0.9, 1.0]: 0.95, 0.95, 1.0, one wrong.
    result = reliability([0.95, 0.95, 0.55, 0.55, 1.0], [True, False, True, True, True])
    filled = [b for b in result["bins"] if b["n"]]
    assert [(b["lo"], b["n"], b["accuracy"]) for b in filled] == [
        (0.5, 2, 1.0),
        (0.9, 3, pytest.approx(2 / 3)),
    ]
    assert result["ece"] == pytest.approx(2 / 5 * 0.45 + 3 / 5 * (0.9666667 - 2 / 3), abs=1e-6)
    assert len(result["bins"]) == 10
    assert reliability([], [])["ece"] is None
    assert reliability([0.8, 0.8], [True, False])["ece"] == pytest.approx(0.3)


def test_scorer_reports_ece_of_the_predicted_spans(trained_nlp):
    examples = [
        Example(trained_nlp(eg.reference.text), eg.reference) for eg in make_examples(trained_nlp)
    ]
    scores = trained_nlp.get_pipe("spandec_ner").score(examples)
    n = sum(len(eg.predicted.spans["spandec"]) for eg in examples)
    assert sum(b["n"] for b in scores["spans_spandec_reliability"]) == n > 0
    assert 0.0 <= scores["spans_spandec_ece"] <= 1.0
