"""Run by tests/test_default_threads.py in a fresh interpreter, as a user runs
the package: no pytest, no session-wide `torch.set_num_threads(1)`, and no
OMP_NUM_THREADS / MKL_NUM_THREADS (the test strips them), so torch uses its
default thread count.

    python fresh_process.py determinism BERT_DIR  # training losses from one seed, twice
    python fresh_process.py serve PIPELINE_DIR    # the user's path: load, nlp(), pipe, n_process=2

Each mode prints one JSON object on the last line of stdout and its progress
to stderr, so a test that times out can say which step hung.
"""

import json
import os
import pickle
import sys
import tempfile
import time
from pathlib import Path

import torch

THREADS_AT_START = torch.get_num_threads()
if THREADS_AT_START < 2:
    # Torch's default is the number of physical cores. On a one-core machine
    # use two threads anyway: the n_process hang needs a multi-threaded parent.
    torch.set_num_threads(2)

import spacy  # noqa: E402
from conftest import (  # noqa: E402
    EQUIVALENCE_TEXTS,
    doc_outputs,
    make_bert_nlp,
    make_cnn_nlp,
    training_losses,
)


def step(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def settings() -> dict:
    return {
        "threads_at_start": THREADS_AT_START,
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "env": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")},
    }


def determinism(bert_dir: str) -> dict:
    """Losses of training runs from one seed: at the default thread count,
    then at one thread (the README's setting for bit-identical losses)."""
    result = {"settings": settings()}
    makers = {"cnn": make_cnn_nlp, "tiny_bert": lambda: make_bert_nlp(bert_dir)}
    # Few updates at the default threads: on a busy 2-core machine the tiny
    # models train ~15x slower there than at one thread.
    result["default_threads"] = {}
    for name, make in makers.items():
        step(f"default threads: {name}")
        result["default_threads"][name] = {
            "seed0": training_losses(make, seed=0, n_updates=10),
            "seed0_again": training_losses(make, seed=0, n_updates=10),
        }
    torch.set_num_threads(1)
    result["one_thread"] = {}
    for name, make in makers.items():
        step(f"one thread: {name}")
        result["one_thread"][name] = {
            "seed0": training_losses(make, seed=0),
            "seed0_again": training_losses(make, seed=0),
            "seed1": training_losses(make, seed=1),
        }
    return result


def serve(pipeline_dir: str) -> dict:
    texts = EQUIVALENCE_TEXTS
    step("spacy.load")
    nlp = spacy.load(pipeline_dir)
    result = {"settings": settings(), "runs": {}, "seconds": {}}
    runs = result["runs"]

    def run(name, make_docs):
        step(name)
        start = time.perf_counter()
        runs[name] = [doc_outputs(doc) for doc in make_docs()]
        result["seconds"][name] = round(time.perf_counter() - start, 2)

    # nlp() once per text in this (parent) process, at the default threads.
    run("call", lambda: [nlp(text) for text in texts])
    for batch_size in (1, 7, 64):
        run(f"pipe_batch_size_{batch_size}", lambda: nlp.pipe(texts, batch_size=batch_size))
    run(
        "to_bytes",
        lambda: (
            spacy.util.load_model_from_config(nlp.config).from_bytes(nlp.to_bytes()).pipe(texts)
        ),
    )
    run("pickle", lambda: pickle.loads(pickle.dumps(nlp)).pipe(texts))
    with tempfile.TemporaryDirectory() as tmp:
        nlp.to_disk(Path(tmp) / "p")
        run("to_disk_reload", lambda: spacy.load(Path(tmp) / "p").pipe(texts))
    run("spacy_load_again", lambda: spacy.load(pipeline_dir).pipe(texts))
    # Last, after the parent has used its thread pool as much as possible.
    run("n_process_2", lambda: nlp.pipe(texts, batch_size=4, n_process=2))
    result["settings_after"] = settings()
    step("done")
    return result


def main(argv) -> None:
    mode, args = argv[0], argv[1:]
    result = {"determinism": determinism, "serve": serve}[mode](*args)
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1:])
