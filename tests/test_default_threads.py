"""The README's equivalence, `n_process` and determinism claims as users meet
them: in a fresh interpreter at torch's default thread count (this session's
single-thread setting is not inherited, see conftest.pytest_configure), on the
tiny-BERT transformer pipeline with the shipped decoder dropout (0.1).

The subprocesses run tests/fresh_process.py. Each one runs under a timeout
and in its own process group, so a hang (e.g. the `n_process` workers'
torch thread pool after fork) fails the test instead of blocking the suite.
"""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy
import pytest
import spacy
import torch

from spacy_spandec.calibrate import write_settings

from conftest import (
    EQUIVALENCE_TEXTS,
    assert_same_outputs,
    doc_outputs,
    make_bert_nlp,
    make_examples,
    train,
)

TESTS = Path(__file__).resolve().parent
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def fresh_env() -> dict:
    """The user's environment: no thread-count variables, offline hub."""
    env = {k: v for k, v in os.environ.items() if k not in THREAD_VARIABLES}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    return env


def run_fresh(mode: str, *args: str, timeout: float) -> dict:
    proc = subprocess.Popen(
        [sys.executable, str(TESTS / "fresh_process.py"), mode, *map(str, args)],
        cwd=TESTS,
        env=fresh_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the process and any worker it forked
        out, err = proc.communicate()
        steps = [line for line in err.splitlines() if line.startswith("[")]
        pytest.fail(
            f"`fresh_process.py {mode}` did not finish in {timeout} s; it hung after:\n"
            + "\n".join(steps[-3:])
        )
    assert proc.returncode == 0, err[-4000:]
    return json.loads(out.strip().splitlines()[-1])


def assert_default_threads(settings: dict) -> None:
    assert settings["env"] == {"OMP_NUM_THREADS": None, "MKL_NUM_THREADS": None}
    assert settings["threads"] == max(settings["threads_at_start"], 2) >= 2, settings


def test_forked_child_runs_torch_on_one_thread():
    """The package's fork hook (spacy_spandec/threads.py) in this process:
    the parent keeps its threads, a forked child gets one."""
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        torch.ones(256, 256) @ torch.ones(256, 256)  # the parent uses its pool
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover (child)
            os.write(write, str(torch.get_num_threads()).encode())
            os._exit(0)
        os.close(write)
        in_child = int(os.read(read, 16))
        os.close(read)
        os.waitpid(pid, 0)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(previous)
    assert in_child == 1


@pytest.fixture(scope="module")
def served(tiny_bert_dir, tmp_path_factory) -> dict:
    """A tiny-BERT pipeline trained briefly (margins not wide: some entity
    scores are near 0.5), then the user's path in a fresh process: spacy.load,
    nlp() on every text, every other way to run it, n_process=2 last."""
    # Trained here, at this session's one thread, for speed: the claims under
    # test are about running the pipeline, which the fresh process does.
    nlp = make_bert_nlp(tiny_bert_dir)
    train(nlp, make_examples(nlp), n_updates=40, drop=0.1)
    path = tmp_path_factory.mktemp("served") / "pipeline"
    nlp.to_disk(path)
    # Decoding settings as `calibrate` writes them, so the offsets and the
    # temperature are on the paths compared too.
    label = nlp.get_pipe("spandec_ner").labels[0]
    decoding = {"outside_bias": -0.1, "label_biases": {label: 0.2}, "temperature": 1.3}
    write_settings(path, path, "spandec_ner", decoding)
    loaded = spacy.load(path).get_pipe("spandec_ner")
    assert (loaded.outside_bias, loaded.label_biases, loaded.temperature) == tuple(
        decoding.values()
    )
    served = run_fresh("serve", path, timeout=600)
    # The same pipeline at this session's one thread, for the thread-count claim.
    one_thread = spacy.load(path)
    served["call_one_thread"] = [doc_outputs(one_thread(text)) for text in EQUIVALENCE_TEXTS]
    return served


def test_transformer_pipeline_runs_at_default_threads(served):
    assert_default_threads(served["settings"])
    assert served["settings_after"]["threads"] == served["settings"]["threads"]


def test_every_way_to_run_the_transformer_pipeline_gives_the_same_output(served):
    runs = dict(served["runs"])
    reference = runs.pop("call")
    ents = [e for doc in reference for e in doc["ents"]]
    scores = [s for doc in reference for s in doc["scores"]]
    assert len(ents) > 10 and min(scores) < 0.8, (
        "the comparison needs entities, some of them close calls"
    )
    assert set(runs) == {
        "pipe_batch_size_1",
        "pipe_batch_size_7",
        "pipe_batch_size_64",
        "to_bytes",
        "pickle",
        "to_disk_reload",
        "spacy_load_again",
        "n_process_2",
    }
    for name, docs in runs.items():
        # Same entities and spans; scores equal up to float32 rounding
        # (spacy-transformers pads each batch to its own longest doc).
        assert_same_outputs(reference, docs, name, atol=1e-6)


def test_output_does_not_depend_on_the_thread_count(served):
    """The same entities and spans at torch's default threads (the fresh
    process, as users run) and at one thread (this session): multi-threaded
    kernels may only change the scores' float rounding."""
    if served["settings"]["threads"] == 1:
        pytest.skip("one CPU: torch's default is one thread, the same as this session")
    assert torch.get_num_threads() == 1
    assert_same_outputs(served["runs"]["call"], served["call_one_thread"], "1 thread", atol=1e-5)


def test_n_process_after_using_the_model_at_default_threads(served):
    """Issue 'Annotate a corpus': with the parent's torch pool already used,
    nlp.pipe(n_process=2) used to hang forever. run_fresh's timeout turns a
    hang into a failure; here it finished, with the output compared above."""
    assert served["seconds"]["n_process_2"] < 120


@pytest.fixture(scope="module")
def determinism(tiny_bert_dir) -> dict:
    return run_fresh("determinism", tiny_bert_dir, timeout=900)


@pytest.mark.parametrize("model", ["cnn", "tiny_bert"])
def test_training_is_bit_identical_at_one_thread(determinism, model):
    """The README's setting for identical losses: torch.set_num_threads(1)."""
    runs = determinism["one_thread"][model]
    assert runs["seed0"] == runs["seed0_again"]
    assert not numpy.allclose(
        runs["seed0"], runs["seed1"], rtol=1e-3
    )  # the seed matters: not vacuous


@pytest.mark.parametrize("model", ["cnn", "tiny_bert"])
def test_training_at_default_threads_agrees_to_float_rounding(determinism, model):
    """At the default thread count the losses need not be bit-identical
    (multi-threaded CPU kernels do not fix the order of their sums), but two
    runs from one seed agree to float32 rounding."""
    assert_default_threads(determinism["settings"])
    runs = determinism["default_threads"][model]
    numpy.testing.assert_allclose(runs["seed0"], runs["seed0_again"], rtol=1e-5, atol=0)
