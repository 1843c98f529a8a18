"""`python -m spacy_spandec calibrate`: sweep, choose, write, and the written
threshold is the one a loaded pipeline uses."""

import json

import pytest
import spacy
from spacy.tokens import DocBin

from spacy_spandec.calibrate import choose, main

from conftest import TRAIN_DATA, make_cnn_nlp, make_examples, train


def test_choose_highest_threshold_within_tolerance():
    rows = [
        {"threshold": 0.0, "seqeval_f": 0.90},
        {"threshold": 0.2, "seqeval_f": 0.91},
        {"threshold": 0.5, "seqeval_f": 0.905},
        {"threshold": 0.7, "seqeval_f": 0.80},
    ]
    assert choose(rows, tolerance=0.0)["threshold"] == 0.2
    assert choose(rows, tolerance=0.5)["threshold"] == 0.5
    assert choose(rows, tolerance=20.0)["threshold"] == 0.7


def test_calibrate_writes_the_threshold_that_load_uses(trained_nlp, trained_dir, tmp_path):
    dev = tmp_path / "dev.spacy"
    DocBin(docs=[eg.reference for eg in make_examples(trained_nlp)]).to_disk(dev)
    out = tmp_path / "sf"
    main(
        [
            str(trained_dir),
            str(dev),
            str(out),
            "--thresholds",
            "0,0.3,0.6,0.999",
            "--tolerance",
            "0",
            "--results",
            str(tmp_path / "cal.json"),
            "--plot",
            str(tmp_path / "cal.png"),
        ]
    )
    result = json.loads((tmp_path / "cal.json").read_text())
    chosen = result["chosen"]["threshold"]
    sweep = {row["threshold"]: row for row in result["sweep"]}
    # The overfitted model's SF separates entity tokens well: pruning keeps F1
    # and never keeps more spans as the threshold rises.
    assert sweep[0.0]["kept_fraction"] == pytest.approx(1.0)
    assert (
        sweep[0.999]["kept_fraction"]
        <= sweep[0.6]["kept_fraction"]
        <= sweep[0.3]["kept_fraction"]
        < 1.0
    )
    assert chosen > 0.0 and sweep[chosen]["seqeval_f"] == max(
        r["seqeval_f"] for r in result["sweep"]
    )
    assert (tmp_path / "cal.png").stat().st_size > 0
    nlp = spacy.load(out)
    assert nlp.get_pipe("spandec_ner").sf_threshold == chosen
    doc = nlp(TRAIN_DATA[0][0])
    kept, total = doc.spans["spandec"].attrs["n_kept"], doc.spans["spandec"].attrs["n_candidates"]
    assert kept < total
    assert spacy.load(trained_dir).get_pipe("spandec_ner").sf_threshold == 0.0


def test_calibrate_refuses_a_model_without_span_filter(tmp_path):
    nlp = make_cnn_nlp(model={"span_filter": False})
    train(nlp, make_examples(nlp), n_updates=1)
    nlp.to_disk(tmp_path / "p")
    dev = tmp_path / "dev.spacy"
    DocBin(docs=[eg.reference for eg in make_examples(nlp)]).to_disk(dev)
    with pytest.raises(ValueError, match="without a span filter"):
        main([str(tmp_path / "p"), str(dev), str(tmp_path / "out")])


def test_calibrate_tunes_the_outside_bias_and_writes_it_to_both_pipelines(
    trained_nlp, trained_dir, tmp_path
):
    import shutil

    model = tmp_path / "spandec"
    shutil.copytree(trained_dir, model)
    assert spacy.load(model).get_pipe("spandec_ner").outside_bias == 0.0
    dev = tmp_path / "dev.spacy"
    DocBin(docs=[eg.reference for eg in make_examples(trained_nlp)]).to_disk(dev)
    out = tmp_path / "sf"
    # +50 on the O logit predicts no entity at all, so it must lose to -0.25.
    # Neither is the default 0, so a bias that is not written shows up.
    main(
        [
            str(model),
            str(dev),
            str(out),
            "--thresholds",
            "0,0.5",
            "--outside-biases",
            "50,-0.25",
            "--bias-output",
            str(model),
            "--results",
            str(tmp_path / "cal.json"),
        ]
    )
    result = json.loads((tmp_path / "cal.json").read_text())
    rows = {row["outside_bias"]: row for row in result["bias_sweep"]}
    assert rows[50.0]["seqeval_f"] == 0.0 and rows[-0.25]["seqeval_f"] > 0.5
    assert result["outside_bias"] == -0.25
    calibrated = spacy.load(out).get_pipe("spandec_ner")
    assert calibrated.outside_bias == -0.25
    assert calibrated.sf_threshold == result["chosen"]["threshold"]
    # --bias-output gets the bias, and only the bias: its threshold stays 0.
    biased = spacy.load(model).get_pipe("spandec_ner")
    assert biased.outside_bias == -0.25
    assert biased.sf_threshold == 0.0
    assert (
        spacy.load(trained_dir).get_pipe("spandec_ner").outside_bias == 0.0
    )  # the source is untouched


def test_choose_bias_prefers_best_f1_then_the_smallest_offset():
    from spacy_spandec.calibrate import choose_bias

    rows = [
        {"outside_bias": b, "seqeval_f": f}
        for b, f in [(0.0, 0.80), (-1.0, 0.83), (-2.0, 0.83), (-3.0, 0.79)]
    ]
    assert choose_bias(rows)["outside_bias"] == -1.0


def test_calibrate_tunes_per_label_biases_and_writes_them(trained_nlp, trained_dir, tmp_path):
    from spacy_spandec.calibrate import write_settings

    label = trained_nlp.get_pipe("spandec_ner").labels[0]
    model = tmp_path / "spandec"
    # Start from a pipeline whose offset hides one label: tuning must undo it,
    # so a bias that is not tuned, or not written, shows up.
    write_settings(trained_dir, model, "spandec_ner", {"label_biases": {label: -50.0}})
    assert spacy.load(model).get_pipe("spandec_ner").label_biases == {label: -50.0}
    dev = tmp_path / "dev.spacy"
    DocBin(docs=[eg.reference for eg in make_examples(trained_nlp)]).to_disk(dev)
    out = tmp_path / "sf"
    main(
        [
            str(model),
            str(dev),
            str(out),
            "--thresholds",
            "0",
            "--label-biases=-50,0",
            "--bias-output",
            str(model),
            "--results",
            str(tmp_path / "cal.json"),
        ]
    )
    result = json.loads((tmp_path / "cal.json").read_text())
    assert result["label_biases"][label] == 0.0
    assert result["dev_after"]["seqeval_f"] > result["dev_before"]["seqeval_f"]
    assert (
        result["dev_before"]["per_label"][label]["r"]
        == 0.0
        < result["dev_after"]["per_label"][label]["r"]
    )
    for path in (out, model):
        assert spacy.load(path).get_pipe("spandec_ner").label_biases == result["label_biases"]


def test_calibrate_fits_the_temperature_and_writes_it(trained_nlp, trained_dir, tmp_path):
    import shutil

    model = tmp_path / "spandec"
    shutil.copytree(trained_dir, model)
    dev = tmp_path / "dev.spacy"
    DocBin(docs=[eg.reference for eg in make_examples(trained_nlp)]).to_disk(dev)
    out = tmp_path / "sf"
    main(
        [
            str(model),
            str(dev),
            str(out),
            "--thresholds",
            "0",
            "--temperature",
            "--bias-output",
            str(model),
            "--results",
            str(tmp_path / "cal.json"),
        ]
    )
    result = json.loads((tmp_path / "cal.json").read_text())
    nll = {row["temperature"]: row["nll"] for row in result["temperature_nll"]}
    chosen = result["temperature"]
    assert nll[chosen] == min(nll.values())
    assert chosen != 1.0 and nll[chosen] < nll[1.0]  # not vacuous: the default is not the fit
    for path in (out, model):
        assert spacy.load(path).get_pipe("spandec_ner").temperature == chosen


def test_temperature_changes_scores_not_spans(trained_nlp):
    ner = trained_nlp.get_pipe("spandec_ner")
    text = TRAIN_DATA[0][0]
    doc = trained_nlp(text)
    try:
        ner.temperature = 4.0
        hot = trained_nlp(text)
    finally:
        ner.temperature = 1.0
    assert [(s.start, s.end, s.label_) for s in hot.spans["spandec"]] == [
        (s.start, s.end, s.label_) for s in doc.spans["spandec"]
    ]
    assert all(
        h < c
        for h, c in zip(hot.spans["spandec"].attrs["scores"], doc.spans["spandec"].attrs["scores"])
    )
    with pytest.raises(ValueError, match="temperature"):
        ner.temperature = 0.0
