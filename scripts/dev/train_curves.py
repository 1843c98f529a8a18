"""Ablations as dev-F1-against-step curves: train one config under several
sets of overrides with `spacy train`, and collect the dev scores of every
evaluation into one JSON file (and a plot beside it).

    python scripts/dev/train_curves.py configs/spandec.cfg corpus/conllpp \
        --output results/ablations/conllpp_400 --steps 400 --eval-frequency 50 \
        --run base= --run neg0.3=components.spandec_ner.negative_weight=0.3

Each `--run NAME=KEY=VALUE[,KEY=VALUE...]` is one training run (an empty
override list is the config as it is). Runs go `--parallel` at a time, each
with `--threads` torch threads, so two runs share two cores without
oversubscription; a run whose log already holds the last step is not
retrained. Runs already in OUTPUT/curves.json with the same settings (config,
corpus, steps, seed, evaluation frequency, dev limit) are kept, so ablations
can be added one invocation at a time. Accuracy only: the machine is shared,
no timings are kept.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Dict, List, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from run_info import machine  # noqa: E402  (scripts/)

SCORE_COLUMNS = ("ENTS_F", "ENTS_P", "ENTS_R", "SEQEVAL_F")


def parse_run(spec: str) -> Tuple[str, Dict[str, str]]:
    """NAME=KEY=VALUE,KEY=VALUE -> (NAME, {--KEY: VALUE})."""
    name, _, rest = spec.partition("=")
    overrides = {}
    for item in filter(None, rest.split(",")):
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--run {spec!r}: expected KEY=VALUE, got {item!r}")
        overrides[key] = value
    return name, overrides


def parse_log(text: str) -> List[Dict[str, float]]:
    """The dev rows of spaCy's console logger table, one dict per evaluation."""
    header, rows = None, []
    for line in text.splitlines():
        cells = line.split()
        if cells[:2] == ["E", "#"]:
            header = re.sub(r"LOSS (\S+)", r"LOSS_\1", line).split()
        elif header and len(cells) == len(header) and re.fullmatch(r"\d+", cells[1] or ""):
            row = dict(zip(header, cells))
            rows.append(
                {
                    "step": int(row["#"]),
                    **{c.lower(): float(row[c]) for c in SCORE_COLUMNS if c in row},
                }
            )
    return rows


def train(name: str, overrides: Dict[str, str], args: argparse.Namespace) -> List[Dict[str, float]]:
    out = args.workdir / args.output.name / name
    log = out / "train.log"
    if log.exists():
        rows = parse_log(log.read_text())
        if rows and rows[-1]["step"] >= args.steps:
            return rows
    out.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "spacy",
        "train",
        str(args.config),
        "--output",
        str(out / "model"),
        "--paths.train",
        str(args.corpus / "train.spacy"),
        "--paths.dev",
        str(args.corpus / "dev.spacy"),
        "--training.max_steps",
        str(args.steps),
        "--training.eval_frequency",
        str(args.eval_frequency),
        "--corpora.dev.limit",
        str(args.dev_limit),
        "--system.seed",
        str(args.seed),
    ]
    for key, value in overrides.items():
        cmd += [f"--{key}", value]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    with log.open("w") as fh:
        fh.write(" ".join(cmd) + "\n")
        fh.flush()
        subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, check=True)
    return parse_log(log.read_text())


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, run in result["runs"].items():
        steps = [r["step"] for r in run["dev"] if r["step"] > 0]
        ax.plot(steps, [r["ents_f"] for r in run["dev"] if r["step"] > 0], marker="o", label=name)
    ax.set_xlabel("step")
    ax.set_ylabel(f"dev ents_f, % (first {result['dev_limit']} docs)")
    ax.set_title(result["what"], fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("config", type=Path)
    parser.add_argument("corpus", type=Path, help="folder with train.spacy and dev.spacy")
    parser.add_argument("--output", type=Path, required=True, help="folder for curves.json/png")
    parser.add_argument(
        "--workdir", type=Path, default=Path("training/curves"), help="models and logs"
    )
    parser.add_argument(
        "--run", action="append", required=True, help="NAME=KEY=VALUE[,KEY=VALUE...]"
    )
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--eval-frequency", type=int, default=50)
    parser.add_argument("--dev-limit", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    runs = dict(parse_run(spec) for spec in args.run)
    with ThreadPoolExecutor(args.parallel) as pool:
        futures = {name: pool.submit(train, name, ov, args) for name, ov in runs.items()}
        dev = {name: f.result() for name, f in futures.items()}
    import torch

    result = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{machine()}, torch {torch.__version__}",
        "what": f"{args.config.stem} on {args.corpus.name}: {args.steps} steps, seed {args.seed}, dev ents_f every {args.eval_frequency}",
        "command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "dev_limit": args.dev_limit,
        "runs": {name: {"overrides": runs[name], "dev": dev[name]} for name in runs},
    }
    args.output.mkdir(parents=True, exist_ok=True)
    path = args.output / "curves.json"
    if path.exists():
        # Runs of an earlier invocation with the same settings stay beside the new ones.
        earlier = json.loads(path.read_text())
        if earlier["what"] == result["what"] and earlier["dev_limit"] == result["dev_limit"]:
            result["commands"] = earlier.get("commands", [earlier["command"]]) + [result["command"]]
            result["runs"] = {**earlier["runs"], **result["runs"]}
    path.write_text(json.dumps(result, indent=2) + "\n")
    plot(result, args.output / "curves.png")


if __name__ == "__main__":
    main()
