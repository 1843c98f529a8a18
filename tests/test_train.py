"""Resumable training (`python -m spacy_spandec train`), run as users run it:
in a subprocess at torch's default thread count, cut short on purpose or
killed, then resumed, and compared with an uninterrupted run."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy
import pytest
import spacy
from spacy.tokens import DocBin

from conftest import TRAIN_DATA, assert_same_outputs, make_bert_nlp, make_examples
from spacy_spandec.train import (
    converged,
    epoch_batches,
    param_keys,
    read_train_examples,
    train_batches,
)
from test_default_threads import fresh_env

STEPS = 10


def _loss(record: dict) -> float:
    return sum(record["losses"].values())


def _on_corpus(nlp, root: Path):
    """`nlp`'s training config reading train.spacy and dev.spacy from `root`."""
    config = nlp.config.copy()
    config["paths"].update(train=str(root / "train.spacy"), dev=str(root / "dev.spacy"))
    config["corpora"] = {
        "train": {"@readers": "spacy.Corpus.v1", "path": "${paths.train}"},
        "dev": {"@readers": "spacy.Corpus.v1", "path": "${paths.dev}"},
    }
    return config


@pytest.fixture(scope="module")
def setup(tiny_bert_dir, tmp_path_factory) -> dict:
    """A training config for the tiny-BERT pipeline and its corpus on disk."""
    root = tmp_path_factory.mktemp("resumable")
    nlp = make_bert_nlp(tiny_bert_dir)
    examples = make_examples(nlp)
    for name, part in (("train", examples), ("dev", examples[: len(examples) // 2])):
        DocBin(docs=[eg.reference for eg in part]).to_disk(root / f"{name}.spacy")
    config = _on_corpus(nlp, root)
    config["training"].update(
        max_steps=STEPS,
        eval_frequency=3,
        dropout=0.1,
        seed=0,
        batcher={"@batchers": "spacy.batch_by_sequence.v1", "size": 4, "get_length": None},
        optimizer={
            "@optimizers": "spacy-spandec.AdamW.v1",
            "new_weights_lr_factor": 10.0,
            "learn_rate": {
                "@schedules": "spacy-spandec.warmup_linear_ratio.v1",
                "initial_rate": 0.0005,
                "total_steps": STEPS,
                "warmup_ratio": 0.2,
            },
        },
    )
    config.to_disk(root / "config.cfg")
    return {"root": root, "config": root / "config.cfg"}


def _train(setup: dict, out: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "spacy_spandec", "train", str(setup["config"]), str(out), *args]
    proc = subprocess.run(cmd, env=fresh_env(), capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc


def _curve(out: Path) -> list:
    return [json.loads(line) for line in (out / "curve.jsonl").read_text().splitlines()]


def _predict(out: Path) -> list:
    nlp = spacy.load(out / "model-last")
    return list(nlp.pipe([text for text, _ in TRAIN_DATA]))


def assert_same_run(a: Path, b: Path) -> None:
    curve_a, curve_b = _curve(a), _curve(b)
    assert [r["step"] for r in curve_a] == [r["step"] for r in curve_b]
    assert [r["words"] for r in curve_a] == [r["words"] for r in curve_b]
    # Default thread count: float sums may differ in the last bits.
    assert numpy.allclose([_loss(r) for r in curve_a], [_loss(r) for r in curve_b], rtol=1e-4)
    assert numpy.allclose([r["score"] for r in curve_a], [r["score"] for r in curve_b], atol=1e-6)
    assert_same_outputs(_predict(a), _predict(b), "model-last", atol=1e-4)


@pytest.fixture(scope="module")
def uninterrupted(setup) -> Path:
    out = setup["root"] / "uninterrupted"
    _train(setup, out)
    return out


def test_training_learns_and_records_its_curve(uninterrupted):
    curve = _curve(uninterrupted)
    assert [r["step"] for r in curve] == [0, 3, 6, 9, STEPS]
    assert all(r["train_seconds"] <= r["seconds"] for r in curve)
    # Each record sums the losses since the previous evaluation: 3 updates.
    # Measured at the default threads: 5.36 -> 3.80.
    assert _loss(curve[3]) < 0.8 * _loss(curve[1])
    assert (uninterrupted / "model-best" / "config.cfg").exists()
    state = json.loads((uninterrupted / "checkpoint" / "state.json").read_text())
    assert state["step"] == STEPS and state["finished"] == "max_steps"


def test_a_finished_run_is_not_trained_again(setup, uninterrupted):
    before = (uninterrupted / "curve.jsonl").read_text()
    proc = _train(setup, uninterrupted)
    assert "nothing to do" in proc.stdout
    assert (uninterrupted / "curve.jsonl").read_text() == before


def test_a_run_cut_short_and_resumed_matches_the_uninterrupted_run(setup, uninterrupted):
    out = setup["root"] / "resumed"
    first = _train(setup, out, "--stop-after", "3")
    assert [r["step"] for r in _curve(out)] == [0, 3]
    assert "Resuming" not in first.stdout
    second = _train(setup, out)
    assert "Resuming from" in second.stdout and "after step 3" in second.stdout
    assert_same_run(uninterrupted, out)


def test_a_killed_run_resumes_from_its_last_checkpoint(setup, uninterrupted):
    out = setup["root"] / "killed"
    cmd = [sys.executable, "-m", "spacy_spandec", "train", str(setup["config"]), str(out)]
    proc = subprocess.Popen(
        cmd, env=fresh_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    state = out / "checkpoint" / "state.json"
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if state.exists() and json.loads(state.read_text())["step"] >= 3:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert json.loads(state.read_text())["step"] < STEPS
    _train(setup, out)
    assert_same_run(uninterrupted, out)


def test_optimizer_keys_name_the_same_parameters_in_every_process(tiny_bert_dir):
    def names() -> set:
        nlp = make_bert_nlp(tiny_bert_dir)
        nlp.initialize(lambda: make_examples(nlp))
        return set(param_keys(nlp).values())

    names_a, names_b = names(), names()
    assert names_a == names_b
    assert any("/shim0/" in name for name in names_a)  # the torch modules' parameters
    assert any(name.startswith("transformer/") for name in names_a)


def test_batches_from_a_step_are_those_of_a_run_from_the_start():
    corpus = lambda nlp: list(range(10))  # noqa: E731
    batcher = lambda items: [items[i : i + 3] for i in range(0, len(items), 3)]  # noqa: E731
    full = list(train_batches(corpus, None, batcher, seed=1, max_epochs=3))
    assert len(full) == 12 and [b[3] for b in full].count(True) == 3
    assert full[0][2] != full[4][2]  # each epoch has its own order
    for start in (0, 3, 4, 11):
        assert (
            list(train_batches(corpus, None, batcher, seed=1, max_epochs=3, start=start))
            == full[start:]
        )


def test_train_examples_are_read_as_the_trainer_reads_them(tmp_path):
    """The config's reader re-tokenizes a stored text with the config's
    tokenizer (spaCy splits "Anglo-French" in three), unless gold_preproc keeps the
    stored tokens: what a length batcher then sees. Only the train reader is
    built: the dev one may have no path yet."""
    from spacy.tokens import Doc

    words = ["Anglo-French", "talks", "ended", "."]
    doc = Doc(spacy.blank("en").vocab, words=words, spaces=[True, True, False, False])
    DocBin(docs=[doc]).to_disk(tmp_path / "train.spacy")
    for gold_preproc, expected in ((False, 6), (True, 4)):
        config = tmp_path / f"gold_preproc_{gold_preproc}.cfg"
        config.write_text(
            '[paths]\ntrain = null\ndev = null\n\n[nlp]\nlang = "en"\n\n[nlp.tokenizer]\n'
            '@tokenizers = "spacy.Tokenizer.v1"\n\n[corpora]\n\n[corpora.dev]\n'
            '@readers = "spacy.Corpus.v1"\npath = ${paths.dev}\n\n[corpora.train]\n'
            '@readers = "spacy.Corpus.v1"\npath = ${paths.train}\n'
            f"gold_preproc = {str(gold_preproc).lower()}\n\n"
            '[training]\ntrain_corpus = "corpora.train"\n'
        )  # a dev corpus without a path, as in configs/*.cfg before --paths.dev
        (example,) = read_train_examples(config, tmp_path / "train.spacy")
        assert example.reference.text == doc.text and len(example) == expected


def test_an_epoch_of_the_lab_tools_is_the_trainers():
    """run_all's budgets and the padding/profile tools batch one epoch with
    `epoch_batches`; it must be the epoch the trainer takes."""
    corpus = lambda nlp: list(range(10))  # noqa: E731
    batcher = lambda items: [items[i : i + 3] for i in range(0, len(items), 3)]  # noqa: E731
    full = list(train_batches(corpus, None, batcher, seed=1, max_epochs=2))
    for epoch in (0, 1):
        batches = [b[2] for b in full if b[1] == epoch]
        assert epoch_batches(list(range(10)), batcher, seed=1, epoch=epoch) == batches
    assert epoch_batches(list(range(10)), batcher, seed=1) != epoch_batches(
        list(range(10)), batcher, seed=2
    )


def test_spacy_ner_baseline_trains_and_records_its_curve(setup):
    """The converge budget trains spaCy's own `ner` the same way; its parser
    reports numpy losses, which the curve and the checkpoint must take."""
    nlp = spacy.blank("en")
    nlp.add_pipe("ner")
    config = _on_corpus(nlp, setup["root"])
    config["training"].update(max_steps=20, eval_frequency=10, seed=0)
    path = setup["root"] / "ner.cfg"
    config.to_disk(path)
    out = setup["root"] / "ner"
    _train({"config": path}, out)
    curve = _curve(out)
    assert [r["step"] for r in curve] == [0, 10, 20]
    assert all(isinstance(r["losses"]["ner"], float) for r in curve)
    assert _loss(curve[2]) < _loss(curve[1])
    assert curve[2]["score"] > curve[0]["score"]
    state = json.loads((out / "checkpoint" / "state.json").read_text())
    assert state["step"] == 20 and state["finished"] == "max_steps"


def test_convergence_rule():
    assert not converged([0.5, 0.7], min_gain=0.002, window=2)
    assert not converged([0.5, 0.7, 0.8], min_gain=0.002, window=2)
    assert converged([0.5, 0.8, 0.801, 0.8015], min_gain=0.002, window=2)
    assert converged([0.8, 0.81, 0.80], min_gain=0.002, window=2)


def test_until_converged_evaluates_each_epoch_and_stops(setup):
    out = setup["root"] / "converge"
    # Any gain below 100 F1 points counts as converged: it stops once it has
    # three epoch-end scores (the window is two epochs).
    args = (
        "--until-converged",
        "--min-gain",
        "100",
        "--training.max_epochs",
        "5",
        "--training.max_steps",
        "0",
    )
    proc = _train(setup, out, *args)
    assert "converged after epoch 2" in proc.stdout
    curve = _curve(out)
    assert [r["epoch"] for r in curve if r["epoch_end"]] == [0, 1, 2]
    assert (
        json.loads((out / "checkpoint" / "state.json").read_text())["finished"]
        == "converged after epoch 2"
    )
