"""Throughput of annotating a corpus: `nlp.pipe` in a plain loop (the
baseline) against `spacy-spandec annotate` on one process, with
`--n-process 2`, on one torch thread (one worker's share of 2 cores: the
base of the scaling ratios and of the 100-million-doc estimate) and on Ray
with 1 worker (on 1.5 CPUs, the default share, and on 1 CPU) and 2 workers,
on the test texts of the
benchmarks repeated to --n-docs. Each mode runs in a fresh process, one after
the other, so the ratios to the baseline compare runs of the same session;
run it on a quiet machine.

    python scripts/bench_annotate.py PIPELINE [--datasets conllpp bc5cdr] [--n-docs 50000] \
        [--modes pipe cli cli_1t cli_np2 ray1 ray1_1t ray2] [--output results/annotate]

Per mode it records seconds (pipeline loaded; for the CLI the whole command,
reading and writing included), docs/s, the ratio to `pipe`, the peak RSS of
the process that ran it (worker processes not included) and how many of the
machine's cores were busy meanwhile (every process, Ray's own included). Ray's start-up
overhead is the whole command on the first 64 docs with one worker (Ray,
actor start and pipeline load dominate it), beside the one-process CLI on the
same 64 docs. Writes <output>/annotate.json and annotate.md.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from run_info import machine, peak_rss_mb  # scripts/ is on sys.path

PROJECT_DIR = Path(__file__).resolve().parents[1]
MODES = {
    "pipe": "nlp.pipe in a plain loop (baseline)",
    "cli": "annotate, one process",
    "cli_1t": "annotate, one process, torch on 1 thread",
    "cli_np2": "annotate --n-process 2",
    "ray1": "annotate --engine ray --workers 1",
    "ray1_1t": "annotate --engine ray --workers 1 --cpus-per-worker 1",
    "ray2": "annotate --engine ray --workers 2",
}
STARTUP_DOCS = 64


def write_corpus(datasets: List[str], n_docs: int, path: Path) -> int:
    """The test texts of `datasets`, interleaved and repeated to n_docs, as JSONL."""
    import spacy

    from benchmark import load_test

    vocab = spacy.blank("en").vocab
    texts = [doc.text for dataset in datasets for doc in load_test(dataset, vocab)]
    with path.open("w", encoding="utf8") as fh:
        for i in range(n_docs):
            fh.write(json.dumps({"id": i, "text": texts[i % len(texts)]}) + "\n")
    return n_docs


def child(mode: str, pipeline: str, corpus: Path, batch_size: int) -> Dict[str, Any]:
    """One mode, in this (fresh) process."""
    result: Dict[str, Any] = {"mode": mode}
    if mode == "pipe":
        import spacy

        texts = [json.loads(line)["text"] for line in corpus.open(encoding="utf8")]
        nlp = spacy.load(pipeline)
        start = time.perf_counter()
        n = sum(1 for _ in nlp.pipe(texts, batch_size=batch_size))
        result["seconds"] = time.perf_counter() - start
    else:
        from spacy_spandec.annotate import annotate

        options: Dict[str, Any] = {"batch_size": batch_size, "progress": False}
        if mode == "cli_1t":
            import torch

            torch.set_num_threads(1)
        if mode == "cli_np2":
            options["n_process"] = 2
        if mode.startswith("ray"):
            options.update(engine="ray", workers=int(mode[3]))
        if mode == "ray1_1t":
            options["cpus_per_worker"] = 1.0
        with tempfile.TemporaryDirectory() as out:
            start = time.perf_counter()
            summary = annotate(pipeline, str(corpus), Path(out), **options)
            result["seconds"] = time.perf_counter() - start
        n = summary["annotated"]
    result.update(docs=n, docs_per_s=n / result["seconds"], peak_rss_mb=round(peak_rss_mb(), 1))
    return result


def cpu_ticks() -> Tuple[int, int]:
    """(busy, total) jiffies of all CPUs of the machine, from /proc/stat (Linux)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return sum(values) - idle, sum(values)


def run_mode(mode: str, pipeline: str, corpus: Path, batch_size: int) -> Dict[str, Any]:
    """One mode in a fresh process; also how many of the machine's cores were
    busy meanwhile (all processes: workers, Ray's own, the parent's reading
    and writing), which tells idle cores from overhead."""
    cmd = [
        sys.executable,
        __file__,
        pipeline,
        "--child",
        mode,
        "--corpus",
        str(corpus),
        "--batch-size",
        str(batch_size),
    ]
    busy, total = cpu_ticks()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    busy, total = (now - before for now, before in zip(cpu_ticks(), (busy, total)))
    if proc.returncode != 0:
        return {"mode": mode, "error": proc.stderr[-2000:]}
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["busy_cores"] = round(busy / max(total, 1) * (os.cpu_count() or 1), 2)
    return result


def markdown(report: Dict[str, Any]) -> str:
    lines = [
        "# Annotating a corpus: throughput",
        "",
        f"{report['date']} on {report['machine']}, `{report['command']}`. {report['n_docs']} docs "
        f"({', '.join(report['datasets'])} test texts, repeated), batch size {report['batch_size']}; "
        "each mode in a fresh process, one after the other.",
        "",
        "| mode | seconds | docs/s | × `nlp.pipe` | cores busy | peak RSS MB (parent) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in report["modes"]:
        if "error" in row:
            lines.append(f"| {MODES[row['mode']]} | failed | | | | |")
            continue
        lines.append(
            f"| {MODES[row['mode']]} | {row['seconds']:.1f} | {row['docs_per_s']:.1f} | "
            f"{row.get('vs_pipe', float('nan')):.2f} | {row.get('busy_cores', float('nan')):.2f} | "
            f"{row['peak_rss_mb']:.0f} |"
        )
    rate = {row["mode"]: row["docs_per_s"] for row in report["modes"] if "error" not in row}
    pairs = [("cli_np2", "cli_1t"), ("ray2", "ray1_1t")]
    scaling = [
        f"{MODES[two]} {rate[two] / rate[one]:.2f}× {MODES[one]}"
        for two, one in pairs
        if two in rate and one in rate
    ]
    if scaling:
        lines += ["", "Two workers against one worker on one thread: " + "; ".join(scaling) + "."]
    if "cli_1t" in rate:
        per_worker = rate["cli_1t"]
        hours = {n: 1e8 / (per_worker * n) / 3600 for n in (1, 16, 64, 256)}
        lines += [
            "",
            f"At the measured {per_worker:.0f} docs/s per one-thread worker, 100 million docs like these "
            "would take "
            + ", ".join(f"{h:,.1f} h on {n} CPU workers" for n, h in hours.items())
            + " (linear in workers, as long as reading and writing keep up).",
        ]
    startup = report.get("startup")
    if startup and all("error" not in r for r in startup.values()):
        lines += [
            "",
            f"Start-up, the whole command on {STARTUP_DOCS} docs: one process {startup['cli']['seconds']:.1f} s, "
            f"Ray with one worker {startup['ray1']['seconds']:.1f} s.",
        ]
    return "\n".join(lines) + "\n"


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("pipeline")
    parser.add_argument("--datasets", nargs="+", default=["conllpp", "bc5cdr"])
    parser.add_argument("--n-docs", type=int, default=50000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--modes", nargs="+", choices=list(MODES), default=list(MODES))
    parser.add_argument("--output", type=Path, default=PROJECT_DIR / "results" / "annotate")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--corpus", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.pipeline, args.corpus, args.batch_size)))
        return 0
    report: Dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "machine": machine(),
        "command": "python scripts/bench_annotate.py "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "datasets": args.datasets,
        "n_docs": args.n_docs,
        "batch_size": args.batch_size,
        "modes": [],
    }
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus.jsonl"
        write_corpus(args.datasets, args.n_docs, corpus)
        for mode in args.modes:
            print(f"{mode}: {MODES[mode]}", flush=True)
            report["modes"].append(run_mode(mode, args.pipeline, corpus, args.batch_size))
    if any(mode.startswith("ray") for mode in args.modes):
        with tempfile.TemporaryDirectory() as tmp:
            small = Path(tmp) / "small.jsonl"
            write_corpus(args.datasets, STARTUP_DOCS, small)
            report["startup"] = {
                mode: run_mode(mode, args.pipeline, small, args.batch_size)
                for mode in ("cli", "ray1")
            }
    base = next((r for r in report["modes"] if r["mode"] == "pipe" and "error" not in r), None)
    for row in report["modes"]:
        if base and "error" not in row:
            row["vs_pipe"] = round(row["docs_per_s"] / base["docs_per_s"], 3)
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "annotate.json").write_text(json.dumps(report, indent=1) + "\n")
    text = markdown(report)
    (args.output / "annotate.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
