"""RSS while ~22,000 short docs stream through `nlp.pipe` on the tests'
tiny-BERT pipeline, with and without spacy_spandec's pinned glibc mmap
threshold (spacy_spandec/allocator.py), each in a fresh process.

    python scripts/dev/rss_stream.py --output results/memory/rss_stream.json
"""

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TESTS = Path(__file__).resolve().parents[2] / "tests"
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from run_info import machine  # noqa: E402  (scripts/)

SETTINGS = {
    "pinned (default)": {},
    "glibc dynamic (SPACY_SPANDEC_MALLOPT=0)": {"SPACY_SPANDEC_MALLOPT": "0"},
}


def stream(blocks: int, block: int) -> dict:
    sys.path.insert(0, str(TESTS))
    import torch
    from conftest import build_tiny_bert, make_bert_nlp, make_examples, train
    from test_memory import rss, short_texts  # the test's stream, in blocks

    with tempfile.TemporaryDirectory() as tmp:
        nlp = make_bert_nlp(build_tiny_bert(Path(tmp)))
        train(nlp, make_examples(nlp), n_updates=40, drop=0.1)
    rng = random.Random(0)
    for _ in nlp.pipe(short_texts(2000, rng)):
        pass
    start, growth = rss(), []
    began = time.perf_counter()
    for _ in range(blocks):
        for _ in nlp.pipe(short_texts(block, rng)):
            pass
        growth.append(round(rss() - start, 1))
    return {
        "torch_threads": torch.get_num_threads(),
        "warm_up_docs": 2000,
        "docs_per_block": block,
        "rss_growth_mb_after_each_block": growth,
        "seconds": round(time.perf_counter() - began, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path)
    parser.add_argument("--blocks", type=int, default=4)
    parser.add_argument("--block", type=int, default=5000)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(stream(args.blocks, args.block)))
        return
    runs = {}
    for name, env in SETTINGS.items():
        cmd = [
            sys.executable,
            __file__,
            "--child",
            "--blocks",
            str(args.blocks),
            "--block",
            str(args.block),
        ]
        out = subprocess.run(
            cmd, env={**os.environ, **env}, capture_output=True, text=True, check=True
        ).stdout
        runs[name] = json.loads(out.strip().splitlines()[-1])
        print(name, runs[name])
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        record = {
            "date": time.strftime("%Y-%m-%d"),
            "command": "python scripts/dev/rss_stream.py " + " ".join(sys.argv[1:]),
            "machine": machine(),
            "runs": runs,
        }
        args.output.write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
