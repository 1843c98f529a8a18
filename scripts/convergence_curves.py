"""Collect the dev curves of the `converge` budget into one result file and a
plot: dev F1 against step and against training seconds, every model of one
benchmark, with each model's training words/s and its test scores.

    python scripts/convergence_curves.py --dataset conllpp [--run conllpp_mixed128] [--output ...]

It reads training/<run>_converge/<config>/curve.jsonl (one line per dev
evaluation, written by `python -m spacy_spandec train`), the checkpoint state
(finished or not, and why) and metrics/<run>_converge/<config>.json (test
scores from `spacy evaluate`, when they exist), and writes
results/convergence/<run>/. The run is the dataset's name, or a run of
another granularity such as `conllpp_mixed128` (`run_all.py --granularity`).
training/ is not committed, so the JSON written here is the record: it copies
every point of every curve.
A model still training is collected as far as it got; a model with no curve
under training/ (a fresh checkout) is kept as the previous curves.json
recorded it, with the date it was collected.
"""

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

from run_info import machine, now  # scripts/ is on sys.path

PROJECT_DIR = Path(__file__).resolve().parents[1]
TRAINED = ["spacy_ner", "token_cls", "spandec"]  # sf_spandec is spandec's model, calibrated
LABELS = {"spacy_ner": "spaCy ner", "token_cls": "token classification", "spandec": "SpanDec"}
TEST_KEYS = ("seqeval_f", "seqeval_p", "seqeval_r", "ents_f", "spans_spandec_kept_fraction")


def read_curve(folder: Path) -> List[Dict[str, Any]]:
    path = folder / "curve.jsonl"
    if not path.exists():
        return []
    points = []
    for line in path.read_text().splitlines():
        record = json.loads(line)
        scores = record.get("scores", {})
        points.append(
            {
                "step": record["step"],
                "epoch": record["epoch"],
                "epoch_end": record["epoch_end"],
                "words": record["words"],
                "seconds": record["seconds"],
                "train_seconds": record["train_seconds"],
                "ents_f": scores.get("ents_f"),
                "seqeval_f": scores.get("seqeval_f"),
            }
        )
    return points


def finished(folder: Path) -> Optional[str]:
    state = folder / "checkpoint" / "state.json"
    return json.loads(state.read_text()).get("finished") if state.exists() else None


def test_scores(path: Path) -> Optional[Dict[str, float]]:
    if not path.exists():
        return None
    scores = json.loads(path.read_text())
    return {k: scores[k] for k in TEST_KEYS if k in scores}


def converge_run(run: str) -> str:
    """The folder name of `run` under the converge budget (run_all.py's
    suffix), whether or not `run` already carries it."""
    return run if run.endswith("_converge") else f"{run}_converge"


def collect(dataset: str, root: Optional[Path] = None, run: Optional[str] = None) -> Dict[str, Any]:
    root = root or PROJECT_DIR
    run = converge_run(run or dataset)
    models: Dict[str, Any] = {}
    for config in TRAINED:
        folder = root / "training" / run / config
        curve = read_curve(folder)
        if not curve:
            continue
        last = curve[-1]
        best = max(curve, key=lambda p: (p["ents_f"] or 0.0, -p["step"]))
        models[config] = {
            "label": LABELS[config],
            "finished": finished(folder),
            "steps": last["step"],
            "epochs": last["epoch"] + (1 if last["epoch_end"] else 0),
            "train_words_per_s": round(last["words"] / last["train_seconds"], 1)
            if last["train_seconds"]
            else None,
            "best_dev": {"step": best["step"], "ents_f": best["ents_f"]},
            "test": test_scores(root / "metrics" / run / f"{config}.json"),
            "curve": curve,
        }
    sf_test = test_scores(root / "metrics" / run / "sf_spandec.json")
    if sf_test and "spandec" in models:
        models["spandec"]["test_sf_spandec"] = sf_test
    return {
        "dataset": dataset,
        "run": run.removesuffix("_converge"),
        "collected": now(),
        "machine": machine(),
        "command": "python scripts/convergence_curves.py " + " ".join(sys.argv[1:]),
        "models": models,
    }


def keep_previous(result: Dict[str, Any], previous: Dict[str, Any]) -> Dict[str, Any]:
    """`result` plus the models of `previous` (an earlier curves.json) that have
    no curve under training/ now, each marked with when it was collected."""
    models = dict(result["models"])
    for config, model in previous.get("models", {}).items():
        if config not in models:
            models[config] = {"collected": previous["collected"], **model}
    ordered = {c: models[c] for c in TRAINED if c in models}
    return {**result, "models": ordered}


def plot(result: Dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for model in result["models"].values():
        points = [p for p in model["curve"] if p["ents_f"] is not None and p["step"] > 0]
        f1 = [100 * p["ents_f"] for p in points]
        axes[0].plot([p["step"] for p in points], f1, marker=".", label=model["label"])
        axes[1].plot(
            [p["train_seconds"] / 60 for p in points], f1, marker=".", label=model["label"]
        )
    axes[0].set_xlabel("step")
    axes[1].set_xlabel("training minutes (updates only, no evaluation)")
    axes[0].set_ylabel("dev ents_f, %")
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=8)
    fig.suptitle(
        f"{result.get('run', result['dataset'])}: training to convergence ({result['machine']})",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dataset", required=True)
    parser.add_argument(
        "--run",
        help="the run's folder name, with or without `_converge` (default: the dataset)",
    )
    parser.add_argument(
        "--output",
        type=Path,
        help="folder for curves.json/png (default results/convergence/<run>)",
    )
    args = parser.parse_args(argv)
    run = converge_run(args.run or args.dataset)
    output = args.output or PROJECT_DIR / "results" / "convergence" / run.removesuffix("_converge")
    result = collect(args.dataset, run=run)
    if (output / "curves.json").exists():
        result = keep_previous(result, json.loads((output / "curves.json").read_text()))
    if not result["models"]:
        print(
            f"No curves under training/{run}/: run `spacy project run all --vars.budget converge` first."
        )
        return 1
    output.mkdir(parents=True, exist_ok=True)
    (output / "curves.json").write_text(json.dumps(result, indent=1) + "\n")
    plot(result, output / "curves.png")
    for config, model in result["models"].items():
        test = model["test"] or {}
        tested = f"  test seqeval {100 * test['seqeval_f']:.2f}" if "seqeval_f" in test else ""
        kept = f"  (kept from {model['collected']})" if "collected" in model else ""
        print(
            f"{config:10} steps {model['steps']:5}  finished: {model['finished'] or 'no'}  "
            f"best dev {100 * (model['best_dev']['ents_f'] or 0):.2f}{tested}{kept}"
        )
    print(f"wrote {output}/curves.json and curves.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
