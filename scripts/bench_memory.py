"""Peak memory and time of `spandec_ner` against document length, and RSS
over a long stream of short docs.

Why: the decoder bounds the attention scores it materialises at once, and
the component should keep nothing between calls. This measures what that
gives end to end: peak RSS per doc length, and RSS over a long stream.

    # one 1k-, 10k- and 50k-token doc, each in a fresh process (peak RSS per length)
    python scripts/bench_memory.py [--model PATH] [--lengths 1000 10000 50000]

    # N short docs through nlp.pipe, RSS every 5,000 docs: no growth after warm-up
    python scripts/bench_memory.py --stream 100000 [--every 5000] [--batch-size 64] [--malloc-trim]

    common: [--output results.json] [--png plot.png] [--threads 1]

Without --model it trains the small CNN pipeline of the tests (64-wide
HashEmbedCNN + spandec_ner, a dozen sentences, a few seconds) into a temporary
directory; every measurement runs in a child process that loads the pipeline
from disk, so training never counts. The stream reuses a fixed pool of texts,
so the vocab stops growing after warm-up. With glibc, RSS still creeps up
as the decoder's variable-size tensors fragment the heap; --malloc-trim
returns freed memory before each reading, so what growth remains is live
memory.
Output: JSON on stdout (and in --output); a PNG if --png is given and
matplotlib is installed.
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
from typing import Any, Dict, List, Optional

from run_info import current_rss_mb, peak_rss_mb  # scripts/ is on sys.path

# The small labelled set the tests train on (tests/fixtures/small_ner.json).
SENTENCES = [
    (text, [tuple(ent) for ent in ents])
    for text, ents in json.loads(
        (Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "small_ner.json").read_text()
    )
]
EXTRA_TEXTS = [
    "Zürich and Dvořák 👩\u200d👩\u200d👧 met in 東京 .",
    "مرحبا Berlin שלום \u200b Paris",
    "  \n",
    "",
    "Angela Merkel\tmet\nEmmanuel Macron .",
]


def malloc_trim() -> bool:
    """Give freed heap memory back to the OS (glibc only). RSS measured
    after it is live memory, without the allocator's fragmentation."""
    import ctypes
    import gc

    gc.collect()
    try:
        return bool(ctypes.CDLL("libc.so.6").malloc_trim(0))
    except (OSError, AttributeError):
        return False


def set_threads(n: int) -> None:
    import torch

    torch.set_num_threads(n)


# The default pipeline --------------------------------------------------------------


def train_default_pipeline(path: Path, n_updates: int = 40) -> None:
    import spacy
    from spacy.training import Example
    from thinc.api import Adam, fix_random_seed

    import spacy_spandec  # noqa: F401  (registrations)

    fix_random_seed(0)
    nlp = spacy.blank("en")
    nlp.add_pipe(
        "spandec_ner",
        config={
            "model": {
                "n_heads": 4,
                "dropout": 0.0,
                "tok2vec": {
                    "@architectures": "spacy.HashEmbedCNN.v2",
                    "width": 64,
                    "depth": 2,
                    "embed_size": 500,
                    "window_size": 1,
                    "maxout_pieces": 3,
                    "subword_features": True,
                    "pretrained_vectors": None,
                },
            }
        },
    )
    examples = []
    for text, ents in SENTENCES:
        reference = nlp.make_doc(text)
        spans = []
        for ent_text, label in ents:
            start = text.index(ent_text)
            spans.append(reference.char_span(start, start + len(ent_text), label=label))
        reference.ents = spans
        examples.append(Example(nlp.make_doc(text), reference))
    nlp.initialize(lambda: examples)
    optimizer = Adam(0.003)
    for _ in range(n_updates):
        nlp.update(examples, sgd=optimizer)
    nlp.to_disk(path)


# Children: one measurement each ------------------------------------------------------


def long_doc(nlp, n_tokens: int):
    """A doc of exactly n_tokens tokens: shuffled sentences and odd texts."""
    from spacy.tokens import Doc

    rng = random.Random(0)
    pool = [nlp.make_doc(t) for t in [s for s, _ in SENTENCES] + EXTRA_TEXTS]
    words: List[str] = []
    spaces: List[bool] = []
    while len(words) < n_tokens:
        doc = rng.choice(pool)
        words.extend(t.text for t in doc)
        spaces.extend(bool(t.whitespace_) for t in doc)
        if spaces:
            spaces[-1] = True
    return Doc(nlp.vocab, words=words[:n_tokens], spaces=spaces[:n_tokens])


def child_length(model: str, n_tokens: int, threads: int) -> Dict[str, Any]:
    import spacy

    set_threads(threads)
    start = time.perf_counter()
    nlp = spacy.load(model)
    load_seconds = time.perf_counter() - start
    nlp(SENTENCES[0][0])  # warm-up: lazy allocations, first-call caches
    doc = long_doc(nlp, n_tokens)
    rss_before = current_rss_mb()
    peak_before = peak_rss_mb()
    start = time.perf_counter()
    doc = nlp(doc)
    seconds = time.perf_counter() - start
    peak_after = peak_rss_mb()
    group = doc.spans.get("spandec")
    return {
        "tokens": len(doc),
        "seconds": round(seconds, 3),
        "tokens_per_second": round(len(doc) / seconds, 1) if seconds else None,
        "load_seconds": round(load_seconds, 3),
        "rss_before_mb": round(rss_before, 1),
        "peak_rss_mb": round(peak_after, 1),
        "peak_increase_mb": round(peak_after - max(peak_before, rss_before), 1),
        "rss_after_mb": round(current_rss_mb(), 1),
        "n_spans": len(group) if group is not None else None,
        "n_candidates": group.attrs.get("n_candidates") if group is not None else None,
        "n_ents": len(doc.ents),
    }


def child_stream(
    model: str, n_docs: int, every: int, batch_size: int, threads: int, trim: bool
) -> Dict[str, Any]:
    import spacy

    set_threads(threads)
    nlp = spacy.load(model)
    pool = [s for s, _ in SENTENCES] + EXTRA_TEXTS
    pool += [a + " " + b for a, b in zip(pool, pool[3:] + pool[:3])]
    rng = random.Random(0)

    def texts():
        for _ in range(n_docs):
            yield rng.choice(pool)

    if trim:
        malloc_trim()
    checkpoints = [{"docs": 0, "rss_mb": round(current_rss_mb(), 1), "seconds": 0.0}]
    start = time.perf_counter()
    n_ents = 0
    for i, doc in enumerate(nlp.pipe(texts(), batch_size=batch_size), start=1):
        n_ents += len(doc.ents)
        if i % every == 0 or i == n_docs:
            if trim:
                malloc_trim()
            checkpoints.append(
                {
                    "docs": i,
                    "rss_mb": round(current_rss_mb(), 1),
                    "seconds": round(time.perf_counter() - start, 2),
                }
            )
    # Growth after warm-up: from the first checkpoint after the first `every` docs.
    warm = checkpoints[1] if len(checkpoints) > 1 else checkpoints[0]
    after = [c["rss_mb"] for c in checkpoints[1:]] or [warm["rss_mb"]]
    return {
        "docs": n_docs,
        "batch_size": batch_size,
        "every": every,
        "malloc_trim": trim,
        "n_ents": n_ents,
        "seconds": checkpoints[-1]["seconds"],
        "docs_per_second": round(n_docs / checkpoints[-1]["seconds"], 1)
        if checkpoints[-1]["seconds"]
        else None,
        "rss_after_warmup_mb": warm["rss_mb"],
        "rss_final_mb": checkpoints[-1]["rss_mb"],
        "growth_after_warmup_mb": round(checkpoints[-1]["rss_mb"] - warm["rss_mb"], 1),
        "max_growth_after_warmup_mb": round(max(after) - warm["rss_mb"], 1),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "checkpoints": checkpoints,
    }


def run_child(args: List[str], threads: int) -> Dict[str, Any]:
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env.setdefault(var, str(threads))
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    result = subprocess.run(
        [sys.executable, os.path.abspath(__file__), *args, "--threads", str(threads)],
        capture_output=True,
        text=True,
        env=env,
    )
    if result.returncode != 0:
        raise RuntimeError(f"child {args} failed:\n{result.stderr[-4000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


# Plot -------------------------------------------------------------------------------


def plot(report: Dict[str, Any], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no PNG written", file=sys.stderr)
        return False
    if "lengths" in report:
        rows = report["lengths"]
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
        tokens = [r["tokens"] for r in rows]
        ax1.plot(tokens, [r["peak_rss_mb"] for r in rows], "o-", label="peak RSS")
        ax1.plot(tokens, [r["rss_before_mb"] for r in rows], "o--", label="RSS before the doc")
        ax1.set_xscale("log")
        ax1.set_xlabel("doc length (tokens)")
        ax1.set_ylabel("MB")
        ax1.legend()
        ax2.plot(tokens, [r["seconds"] for r in rows], "o-")
        ax2.set_xscale("log")
        ax2.set_yscale("log")
        ax2.set_xlabel("doc length (tokens)")
        ax2.set_ylabel("seconds")
        fig.suptitle(f"spandec_ner: memory and time vs doc length ({report['model']})")
    else:
        stream = report["stream"]
        points = stream["checkpoints"]
        fig, ax = plt.subplots(figsize=(7, 4))
        ax.plot([c["docs"] for c in points], [c["rss_mb"] for c in points], "o-")
        ax.set_xlabel("docs processed")
        ax.set_ylabel("RSS (MB)")
        ax.set_title(f"spandec_ner: RSS over {stream['docs']} short docs ({report['model']})")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return True


# Main -------------------------------------------------------------------------------


def main(argv: Optional[List[str]] = None) -> Dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model", help="pipeline directory or package (default: train the small CNN one)"
    )
    parser.add_argument("--lengths", type=int, nargs="+", default=[1000, 10000, 50000])
    parser.add_argument(
        "--stream",
        type=int,
        nargs="?",
        const=100000,
        default=None,
        metavar="N",
        help="run N short docs (default 100000) through nlp.pipe instead",
    )
    parser.add_argument("--every", type=int, default=5000, help="stream: RSS every this many docs")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="torch threads in the children")
    parser.add_argument(
        "--malloc-trim",
        action="store_true",
        help="stream: malloc_trim(0) before each RSS reading (glibc), so that "
        "allocator fragmentation is not mistaken for a leak",
    )
    parser.add_argument("--output", type=Path, help="also write the JSON here")
    parser.add_argument("--png", type=Path, help="also plot to this PNG (needs matplotlib)")
    parser.add_argument("--child-length", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--child-stream", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child_length is not None:
        print(json.dumps(child_length(args.model, args.child_length, args.threads)))
        return {}
    if args.child_stream is not None:
        print(
            json.dumps(
                child_stream(
                    args.model,
                    args.child_stream,
                    args.every,
                    args.batch_size,
                    args.threads,
                    args.malloc_trim,
                )
            )
        )
        return {}

    with tempfile.TemporaryDirectory() as tmp:
        model = args.model
        if model is None:
            model = str(Path(tmp) / "cnn_pipeline")
            set_threads(args.threads)
            start = time.perf_counter()
            train_default_pipeline(Path(model))
            print(
                f"trained the default CNN pipeline in {time.perf_counter() - start:.1f} s",
                file=sys.stderr,
            )
        report: Dict[str, Any] = {
            "model": args.model or "default CNN pipeline",
            "python": sys.version.split()[0],
        }
        if args.stream is not None:
            every = max(1, min(args.every, args.stream))
            print(f"streaming {args.stream} docs ...", file=sys.stderr)
            report["stream"] = run_child(
                [
                    "--model",
                    model,
                    "--child-stream",
                    str(args.stream),
                    "--every",
                    str(every),
                    "--batch-size",
                    str(args.batch_size),
                ]
                + (["--malloc-trim"] if args.malloc_trim else []),
                args.threads,
            )
        else:
            report["lengths"] = []
            for n in args.lengths:
                print(f"{n} tokens ...", file=sys.stderr)
                report["lengths"].append(
                    run_child(["--model", model, "--child-length", str(n)], args.threads)
                )
    text = json.dumps(report, indent=2)
    print(text)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text + "\n", encoding="utf8")
    if args.png and plot(report, args.png):
        print(f"wrote {args.png}", file=sys.stderr)
    return report


if __name__ == "__main__":
    main()
