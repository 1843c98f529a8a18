"""Collect the project's metrics into results/summary/results.{md,json}.

Reads metrics/<run>/<config>.json (written by `spacy evaluate`; a run is a
dataset, or a dataset with a suffix such as conllpp_chunk74 for chunked samples),
results/calibration/<run>/calibration.json (SF threshold sweep) and
results/summary/timings.json (wall time of every step, from scripts/run_all.py).
Only measured numbers are written; a missing run is left out, never filled.
The paper's MiniLM-L12 F1 (Table 7) is printed beside ours for reference.

    python scripts/results_table.py --metrics metrics --timings results/summary/timings.json --output results/summary/results
"""

import argparse
import json
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple


DATASETS = ["conllpp", "crossner", "ontonotes5", "bc5cdr"]
CONFIGS = {
    "spacy_ner": "spaCy `ner`",
    "token_cls": "Token classification",
    "spandec": "SpanDec",
    "sf_spandec": "SF-SpanDec",
}
DOMAINS = ["politics", "science", "music", "literature", "ai"]
# Paper, Table 7 (MiniLM-L12, 100 epochs on GPU): F1 per dataset (no spaCy `ner` row).
PAPER_MINILM = {
    "token_cls": {"conllpp": 92.9, "crossner": 71.2, "ontonotes5": 87.8, "bc5cdr": 87.1},
    "spandec": {"conllpp": 93.7, "crossner": 74.6, "ontonotes5": 88.4, "bc5cdr": 88.0},
    "sf_spandec": {"conllpp": 93.4, "crossner": 73.8, "ontonotes5": 88.3, "bc5cdr": 87.6},
}


def load(path: Path) -> Optional[Dict[str, Any]]:
    return json.loads(path.read_text()) if path.exists() else None


def pct(value: Optional[float]) -> str:
    return "" if value is None else f"{100 * value:.1f}"


def runs_of(metrics_dir: Path) -> List[Tuple[str, str]]:
    """(run, dataset) for every metrics/<run> folder, in DATASETS order,
    sentence runs before their suffixed variants."""
    found = []
    names = (
        sorted(p.name for p in metrics_dir.iterdir() if p.is_dir()) if metrics_dir.exists() else []
    )
    for dataset in DATASETS:
        found += [(name, dataset) for name in names if name == dataset]
        found += [(name, dataset) for name in names if name.startswith(dataset + "_")]
    return found


def collect(metrics_dir: Path, timings_path: Path) -> Dict[str, Any]:
    timings = load(timings_path) or {}
    rows: Dict[str, Any] = {}
    for run, dataset in runs_of(metrics_dir):
        calibration = load(
            metrics_dir.parent / "results" / "calibration" / run / "calibration.json"
        )
        for config in CONFIGS:
            metrics = load(metrics_dir / run / f"{config}.json")
            if metrics is None:
                continue
            documents = load(metrics_dir / run / f"{config}_documents.json") or {}
            row: Dict[str, Any] = {
                "seqeval_p": metrics.get("seqeval_p"),
                "seqeval_r": metrics.get("seqeval_r"),
                "seqeval_f": metrics.get("seqeval_f"),
                "ents_f": metrics.get("ents_f"),
                "documents_seqeval_f": documents.get("seqeval_f"),
                "kept_fraction": metrics.get("spans_spandec_kept_fraction"),
                "speed_words_per_s": metrics.get("speed"),
                "paper_minilm_f1": PAPER_MINILM.get(config, {}).get(dataset),
            }
            trained = "spandec" if config == "sf_spandec" else config
            train = timings.get(f"{run}/{trained}/train", {})
            row["train_seconds"] = train.get("seconds")
            row["max_steps"] = train.get("vars", {}).get("max_steps")
            row["evaluate_seconds"] = timings.get(f"{run}/{config}/evaluate", {}).get("seconds")
            if calibration and config in ("spandec", "sf_spandec"):
                if config == "sf_spandec":
                    row["sf_threshold"] = calibration["chosen"]["threshold"]
                # Runs calibrated before outside_bias existed decode with 0.
                row["outside_bias"] = calibration.get("outside_bias", 0.0)
            if dataset == "crossner":
                row["domains"] = {}
                for domain in DOMAINS:
                    m = load(metrics_dir / run / f"{config}_{domain}.json")
                    if m:
                        row["domains"][domain] = m.get("seqeval_f")
            rows[f"{run}/{config}"] = row
    return rows


def wall_times(timings_path: Path) -> Dict[str, float]:
    """Measured seconds of every step of each run (skipped reruns keep the
    time of the run that did the work), to check what `all` costs."""
    totals: Dict[str, float] = {}
    for key, record in sorted((load(timings_path) or {}).items()):
        if record.get("dry_run") or record.get("returncode") != 0:
            continue
        run = key.split("/")[0]
        totals[run] = round(totals.get(run, 0.0) + float(record.get("seconds") or 0.0), 2)
    return totals


def run_dates(timings_path: Path) -> str:
    """The days the recorded steps finished on (the table mixes runs from several
    sessions, so the date it was rendered on would say nothing)."""
    days = sorted(
        {
            str(r["finished"])[:10]
            for r in (load(timings_path) or {}).values()
            if r.get("finished") and r.get("returncode") == 0 and not r.get("dry_run")
        }
    )
    if not days:
        return time.strftime("%Y-%m-%d")
    return days[0] if len(days) == 1 else f"{days[0]} to {days[-1]}"


def markdown(
    rows: Dict[str, Any],
    meta: Dict[str, Any],
    times: Optional[Dict[str, float]] = None,
    whole_run: Optional[Dict[str, Any]] = None,
) -> str:
    lines = [
        "# Results",
        "",
        f"Measured on {meta['machine']} on {meta['date']} with `{meta['command']}`.",
        "Test-set seqeval entity F1/P/R (%). Paper column: the paper's MiniLM-L12 row (Table 7),",
        "trained 100 epochs on GPU; ours: the 6-layer all-MiniLM-L6-v2 (5 layers for SpanDec) on the CPU",
        "budget given in `max_steps`. O bias: the O-logit offset `calibrate` tuned on dev (0 = plain argmax).",
        "Documents: F1 on the test set passed as whole documents (`evaluate-documents`), where the files mark them.",
        "What ran beside each run, and so which wall times compare, is in results/README.md.",
        "",
        "| dataset | model | F1 | P | R | documents F1 | paper F1 | SF kept | sf_threshold | O bias | steps | train s | eval s |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for key, row in rows.items():
        dataset, config = key.split("/")
        kept = pct(row.get("kept_fraction")) if config == "sf_spandec" else ""
        lines.append(
            f"| {dataset} | {CONFIGS[config]} | {pct(row['seqeval_f'])} | {pct(row['seqeval_p'])} | "
            f"{pct(row['seqeval_r'])} | {pct(row.get('documents_seqeval_f'))} | {row['paper_minilm_f1'] or ''} | "
            f"{kept} | {row.get('sf_threshold', '')} | "
            f"{row.get('outside_bias', '')} | "
            f"{row.get('max_steps') or ''} | {row.get('train_seconds') or ''} | {row.get('evaluate_seconds') or ''} |"
        )
    domain_rows = [(k, r) for k, r in rows.items() if r.get("domains")]
    if domain_rows:
        lines += [
            "",
            "CrossNER per-domain seqeval F1 (%):",
            "",
            "| model | " + " | ".join(DOMAINS) + " |",
            "|---|" + "---:|" * len(DOMAINS),
        ]
        for key, row in domain_rows:
            cells = " | ".join(pct(row["domains"].get(d)) for d in DOMAINS)
            lines.append(f"| {CONFIGS[key.split('/')[1]]} | {cells} |")
    if times:
        lines += [
            "",
            "Wall time of all recorded steps (assets, convert, train, calibrate, evaluate, package), "
            "from results/summary/timings.json:",
            "",
            "| run | seconds | hours |",
            "|---|---:|---:|",
        ]
        lines += [f"| {run} | {sec:.0f} | {sec / 3600:.2f} |" for run, sec in times.items()]
        total = sum(times.values())
        # `spacy project run all` on the cpu budget makes the sentence runs only.
        in_all = sum(sec for run, sec in times.items() if run in DATASETS)
        lines.append(
            f"| runs of `spacy project run all` (cpu budget: {', '.join(r for r in times if r in DATASETS)}) "
            f"| {in_all:.0f} | {in_all / 3600:.2f} |"
        )
        lines.append(f"| total | {total:.0f} | {total / 3600:.2f} |")
    if whole_run:
        command = " ".join(["python scripts/run_all.py"] + whole_run["argv"])
        seconds = whole_run["seconds"]
        outcome = (
            f"failed steps: {', '.join(whole_run['failed'])}"
            if whole_run["failed"]
            else "no step failed"
        )
        lines += [
            "",
            f"One uninterrupted `{command}` ({whole_run['budget']} budget; datasets "
            f"{', '.join(whole_run['datasets'])}; models {', '.join(whole_run['configs'])}): "
            f"{whole_run['started']} to {whole_run['finished']}, {seconds:.0f} s ({seconds / 3600:.2f} h), "
            f"{outcome}. From results/summary/run_all.json.",
        ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--metrics", type=Path, default=Path("metrics"))
    parser.add_argument("--timings", type=Path, default=Path("results/summary/timings.json"))
    parser.add_argument("--output", type=Path, default=Path("results/summary/results"))
    parser.add_argument(
        "--run-record",
        type=Path,
        default=Path("results/summary/run_all.json"),
        help="wall time of one whole run_all.py invocation, if there is one",
    )
    parser.add_argument("--command", default="spacy project run all")
    args = parser.parse_args()
    rows = collect(args.metrics, args.timings)
    times = wall_times(args.timings)
    whole_run = load(args.run_record)
    meta = {
        # The runs span sessions and hosts: only what they share is known here.
        "machine": "this project's 2-core x86_64 CPU machines, no GPU",
        "date": run_dates(args.timings),
        "command": args.command,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    Path(f"{args.output}.json").write_text(
        json.dumps(
            {"meta": meta, "rows": rows, "wall_seconds": times, "whole_run": whole_run}, indent=2
        )
        + "\n"
    )
    table = markdown(rows, meta, times, whole_run)
    Path(f"{args.output}.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
