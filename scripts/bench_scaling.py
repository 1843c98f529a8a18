"""Throughput against document length, for token classification, SpanDec and SF-SpanDec.

Why: SpanDec bounds what each span attends to (block_size/context_window) and
spacy-transformers encodes long docs in strided windows, so the cost per
word should stay flat from a 50-word doc to a 20,000-word one. This measures
it: docs of exactly N words are cut from the concatenated test texts, each
length gets the same word budget (at least one doc), and words/s is the median
of --repeats `nlp.pipe` passes, models alternating in one process.

    python scripts/bench_scaling.py [--dataset conllpp] [--lengths 50 200 1000 5000 20000] \
        [--words 8000] [--batch-size 8] [--repeats 3] [--output results/scaling]
"""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

import spacy
import torch

from benchmark import PROJECT_DIR, Runner, load_test  # scripts/ is on sys.path

MODELS = ["token_cls", "spandec", "sf_spandec"]


def make_docs(words: List[str], length: int, budget: int) -> List[str]:
    n_docs = max(1, budget // length)
    if n_docs * length > len(words):
        raise ValueError(
            f"{n_docs} docs of {length} words need more than the {len(words)} test words"
        )
    return [" ".join(words[i * length : (i + 1) * length]) for i in range(n_docs)]


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="conllpp")
    parser.add_argument("--lengths", type=int, nargs="+", default=[50, 200, 1000, 5000, 20000])
    parser.add_argument("--words", type=int, default=8000, help="words per length and pass")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", type=Path, default=PROJECT_DIR / "results" / "scaling")
    args = parser.parse_args(argv)

    docs = load_test(args.dataset, spacy.blank("en").vocab)
    words = [token.text for doc in docs for token in doc if not token.is_space]
    pipelines = {}
    for name in MODELS:
        runner = Runner(name, args.dataset)
        runner.load()
        pipelines[name] = runner.nlp
    rows: Dict[str, Dict[str, Dict[str, float]]] = {name: {} for name in pipelines}
    for length in args.lengths:
        texts = make_docs(words, length, args.words)
        n_words = sum(len(t.split()) for t in texts)
        for nlp in pipelines.values():  # warm-up at this length
            list(nlp.pipe(texts[:2], batch_size=args.batch_size))
        times: Dict[str, List[float]] = {name: [] for name in pipelines}
        names = list(pipelines)
        for repeat in range(args.repeats):
            for name in names[repeat % len(names) :] + names[: repeat % len(names)]:
                start = time.perf_counter()
                for doc in pipelines[name].pipe(texts, batch_size=args.batch_size):
                    assert len(doc) >= length
                times[name].append(time.perf_counter() - start)
        for name, secs in times.items():
            median = statistics.median(secs)
            rows[name][str(length)] = {
                "docs": len(texts),
                "words": n_words,
                "seconds": [round(s, 3) for s in secs],
                "words_per_s": round(n_words / median, 1),
                "us_per_word": round(1e6 * median / n_words, 1),
            }
            print(f"{length:>6} words  {name:10} {n_words / median:8.0f} words/s", flush=True)
    lo, hi = str(min(args.lengths)), str(max(args.lengths))
    result = {
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "command": "python scripts/bench_scaling.py "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "torch_threads": torch.get_num_threads(),
        "dataset": args.dataset,
        "batch_size": args.batch_size,
        "models": rows,
        "cost_per_word_longest_vs_shortest": {
            name: round(r[hi]["us_per_word"] / r[lo]["us_per_word"], 3) for name, r in rows.items()
        },
    }
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "scaling.json").write_text(json.dumps(result, indent=1))
    write_markdown(result, args.lengths, args.output / "scaling.md")
    plot(result, args.lengths, args.output / "scaling.png")
    print(json.dumps(result["cost_per_word_longest_vs_shortest"]))


def write_markdown(result: Dict, lengths: List[int], path: Path) -> None:
    lines = [
        "# Throughput against document length",
        "",
        f"{result['date']}, `{result['command']}`, batch size {result['batch_size']}, "
        f"{result['torch_threads']} torch threads; words/s, median of the passes.",
        "",
        "| model | "
        + " | ".join(f"{n} words" for n in lengths)
        + " | cost/word longest ÷ shortest |",
        "|---|" + "---:|" * (len(lengths) + 1),
    ]
    for name, row in result["models"].items():
        cells = [f"{row[str(n)]['words_per_s']:.0f}" for n in lengths]
        lines.append(
            f"| {name} | "
            + " | ".join(cells)
            + f" | {result['cost_per_word_longest_vs_shortest'][name]:.2f} |"
        )
    path.write_text("\n".join(lines) + "\n")


def plot(result: Dict, lengths: List[int], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, row in result["models"].items():
        ax.plot(lengths, [row[str(n)]["words_per_s"] for n in lengths], marker="o", label=name)
    ax.set_xscale("log")
    ax.set_xlabel("document length (words, log scale)")
    ax.set_ylabel("words/s")
    ax.set_ylim(bottom=0)
    ax.set_title(f"{result['dataset']} test text, batch {result['batch_size']}")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
