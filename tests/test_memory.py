"""Memory while streaming: ~20,000 short docs through `nlp.pipe` on the tiny-BERT
transformer pipeline (about 30 s on a loaded 2-core machine: marked slow).

RSS is read at three points of one stream: after a warm-up, after the first
half and after the second half. The raw RSS is what the OS sees; then glibc's
`malloc_trim(0)` hands freed heap pages back, so the "trimmed" RSS is the
memory the process still uses. Both must stay flat.
"""

import ctypes
import gc
import json
import random
import subprocess
import sys
from pathlib import Path
from typing import Dict, Iterator

import pytest

from conftest import TRAIN_DATA, make_bert_nlp, make_examples, train
from spacy_spandec.allocator import pin_mmap_threshold
from test_default_threads import fresh_env

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not sys.platform.startswith("linux"), reason="reads /proc and glibc's malloc_trim"
    ),
]

WARM_UP, HALF = 2_000, 9_000  # 20,000 docs in all
MB = 1024 * 1024


def rss() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024 / MB
    raise RuntimeError("no /proc/self/status")


def malloc_trim() -> None:
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)


def short_texts(n: int, rng: random.Random) -> Iterator[str]:
    """1-12 words from the training sentences: the vocab stops growing in
    the warm-up, so string-store growth does not count as a leak."""
    words = sorted({word for text, _ in TRAIN_DATA for word in text.split()})
    for _ in range(n):
        yield " ".join(rng.choice(words) for _ in range(rng.randint(1, 12)))


def measure(bert_dir: str) -> Dict[str, float]:
    """The stream, in this process: train a tiny-BERT pipeline briefly, then
    read RSS after a warm-up and after each half."""
    nlp = make_bert_nlp(bert_dir)
    train(nlp, make_examples(nlp), n_updates=40, drop=0.1)
    rng = random.Random(0)
    n_docs = n_ents = 0

    def run(n: int) -> None:
        nonlocal n_docs, n_ents
        for doc in nlp.pipe(short_texts(n, rng)):  # nlp.pipe's defaults, as users call it
            n_docs += 1
            n_ents += len(doc.ents)
        del doc

    run(WARM_UP)
    malloc_trim()
    out = {"start": rss()}
    for half in ("first", "second"):
        run(HALF)
        out[f"{half}_raw"] = rss()
        malloc_trim()
        out[f"{half}_trimmed"] = rss()
    out.update(n_docs=n_docs, n_ents=n_ents)
    return out


@pytest.fixture(scope="module")
def stream(tiny_bert_dir) -> Dict[str, float]:
    """Measured in a fresh process at the default threads, as users run it:
    the test session's own heap (Ray, pyarrow and earlier tests have used
    it) is not the user's."""
    proc = subprocess.run(
        [sys.executable, __file__, str(tiny_bert_dir)],
        env=fresh_env(),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    print("\nRSS (MB) while streaming:", {k: round(v, 1) for k, v in out.items()})
    return out


def test_streaming_short_docs_keeps_memory_in_use_flat(stream, record_property):
    record_property("rss_mb", {k: round(v, 1) for k, v in stream.items()})
    assert stream["n_docs"] == WARM_UP + 2 * HALF
    assert stream["n_ents"] > 0  # the decoder wrote entities: its whole path ran
    first = stream["first_trimmed"] - stream["start"]
    second = stream["second_trimmed"] - stream["first_trimmed"]
    # Measured: +1 to +3 MB per 9,000 docs (allocator noise, torch caches).
    assert second < 8.0, (first, second)
    assert second < first + 4.0, (first, second)


def test_streaming_short_docs_keeps_raw_rss_flat(stream):
    """What the OS sees. Without spacy_spandec/allocator.py's pinned mmap
    threshold this grew ~14 KB a doc (about 125 MB per half here)."""
    growth = stream["second_raw"] - stream["first_trimmed"]
    assert growth < 16.0, growth


def test_mmap_threshold_is_pinned_unless_the_user_tunes_malloc(monkeypatch):
    assert pin_mmap_threshold() is True  # glibc: what importing spacy_spandec did
    for variable in ("SPACY_SPANDEC_MALLOPT", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"):
        with monkeypatch.context() as env:
            env.setenv(variable, "0")
            assert pin_mmap_threshold() is False, variable


if __name__ == "__main__":
    print(json.dumps(measure(sys.argv[1])))
