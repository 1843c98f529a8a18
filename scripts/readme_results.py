"""Write the README's results table from the committed result files.

The table between the README's `<!-- results:start -->` and
`<!-- results:end -->` markers is made here and nowhere else: test seqeval F1
from metrics/<dataset>/<config>.json (written by `spacy evaluate`), the
sentences-vs-documents run in results/positions/conllpp_400.json, and the
`spacy evaluate` outputs of the default recipe (and, for OntoNotes documents,
of token classification) in
results/ablations/<dataset>_400/evaluate_<model>_<split>.json, the models of
the converge budget in metrics/<dataset>_converge/<config>.json (a row per
benchmark once one of them is evaluated) and on whole documents in
results/convergence/<dataset>/evaluate_<config>_documents.json, the model
trained on sentences and chunks in results/ablations/conllpp_400_mixed/, the
models trained so to convergence in padded batches in
results/convergence/conllpp_mixed128/evaluate_<config>_<split>.json, and the speed
ratios of the side-by-side benchmark in SPEED. A missing file leaves its cell
at "–", never a copied number.

    python scripts/readme_results.py           # rewrite the block in README.md
    python scripts/readme_results.py --check   # exit 1 if the block is stale
"""

import argparse
import json
import sys
from pathlib import Path
from typing import Dict, List, Optional

ROOT = Path(__file__).resolve().parent.parent
START, END = "<!-- results:start -->", "<!-- results:end -->"
COLUMNS = [
    "spaCy `ner`",
    "token classification",
    "SpanDec v1",
    "SF-SpanDec v1",
    "SpanDec v2, paper loss",
    "**SpanDec**",
    "**SF-SpanDec**",
]
DEFAULT = {
    "**SpanDec**": "spandec",
    "**SF-SpanDec**": "sf_spandec",
}  # results/ablations/<dataset>_400/
DATASETS = {
    "conllpp": "CoNLL++ sentences",
    "bc5cdr": "BC5CDR",
    "crossner": "CrossNER (5 domains)",
    "ontonotes5": "OntoNotes 5",
}
METRICS_FILES = {
    "spaCy `ner`": "spacy_ner",
    "token classification": "token_cls",
    "SpanDec v1": "spandec",
    "SF-SpanDec v1": "sf_spandec",
}
CONVERGED_FILES = {
    "spaCy `ner`": "spacy_ner",
    "token classification": "token_cls",
    "**SpanDec**": "spandec",
    "**SF-SpanDec**": "sf_spandec",
}  # the configs trained to convergence, by their file names
CONVERGED_ROWS = {
    "CoNLL++ sentences, converged": "metrics/conllpp_converge/{}.json",
    "BC5CDR, converged": "metrics/bc5cdr_converge/{}.json",
    "CoNLL++ whole documents, converged, trained on sentences": (
        "results/convergence/conllpp/evaluate_{}_documents.json"
    ),
}  # row label: the file of each config's test scores ({} = CONVERGED_FILES)
CONVERGED_CAPTION = (
    'The "converged" rows train until dev F1 rises by less than 0.2 over two epochs, at most 10 '
    "epochs (`--budget converge`, metrics/<dataset>_converge/); curves: "
    "[results/convergence](results/convergence/)."
)
MIXED_CONVERGED = Path("results/convergence/conllpp_mixed128")
MIXED_CONVERGED_ROWS = {
    "CoNLL++ sentences, converged, trained on sentences and chunks": (
        "results/convergence/conllpp_mixed128/evaluate_{}_sentences.json"
    ),
    "CoNLL++ whole documents, converged, trained on sentences and chunks": (
        "results/convergence/conllpp_mixed128/evaluate_{}_documents.json"
    ),
}
MIXED_CONVERGED_CAPTION = (
    'The "converged, trained on sentences and chunks" rows are every model trained to convergence '
    "on `--granularity mixed --max-tokens 128` in batches of up to 600 padded tokens "
    "(`spacy.batch_by_padded.v1`) instead of 32 samples: "
    f"[{MIXED_CONVERGED.as_posix()}]({MIXED_CONVERGED.as_posix()}/)."
)
MIXED = Path("results/ablations/conllpp_400_mixed")  # evaluate_spandec_mixed128_<split>.json
MIXED_BASELINE = Path("results/ablations/conllpp_400_recipe")  # evaluate_spandec_near_<split>.json
MIXED_ROWS = {
    "sentences": "CoNLL++ sentences, trained on sentences and chunks",
    "documents": "CoNLL++ whole documents, trained on sentences and chunks",
}
POSITIONS = Path("results/positions/conllpp_400.json")
ABLATIONS = Path("results/ablations")  # <dataset>_400/evaluate_<model>_<split>.json
SPEED = Path("results/benchmark/conllpp/benchmark.json")  # the v1 models beside the baselines
SPEED_DEFAULTS = Path(
    "results/benchmark/conllpp_positions/benchmark.json"
)  # v2 (the defaults) and v1
CAPTION = (
    "Test seqeval F1 (%) after 400 steps of 32 sentences on the offline MiniLM-L6 encoder, 2-core CPU. "
    "**SpanDec** and **SF-SpanDec** are SpanDecoder.v2 with every O span in the loss, weighted 0.3 (the "
    "default until O spans far from gold were sampled, session 18), no O offset, SF threshold tuned on dev: "
    "[results/ablations](results/ablations/). The v1 columns are "
    '`metrics/<dataset>/` (window positions, O offset tuned on dev); "v2, paper loss" is '
    "[results/positions](results/positions/conllpp_400.json) (plain mean over spans, no O offset). "
    "Commands, dates and machines: [results/README.md](results/README.md)."
)


def _f1(path: Path) -> Optional[float]:
    return json.loads(path.read_text())["seqeval_f"] * 100 if path.exists() else None


def _metrics_row(folder: Path, files: Dict[str, str]) -> Dict[str, Optional[float]]:
    """Test F1 of each column from `folder`/<its file name>.json, None where missing."""
    return {column: _f1(folder / f"{name}.json") for column, name in files.items()}


def _evaluated(row: Dict[str, Optional[float]]) -> bool:
    return any(value is not None for value in row.values())


def _cell(value: Optional[float]) -> str:
    return "–" if value is None else f"{value:.1f}"


def _file_rows(root: Path, patterns: Dict[str, str]) -> Dict[str, Dict[str, Optional[float]]]:
    """The rows of `patterns` (label: file pattern) that have a scored model."""
    rows = {}
    for label, pattern in patterns.items():
        row = {column: _f1(root / pattern.format(name)) for column, name in CONVERGED_FILES.items()}
        if _evaluated(row):
            rows[label] = row
    return rows


def table(root: Path = ROOT) -> str:
    """The markdown block, caption and table, from the files under `root`."""
    positions = (
        json.loads((root / POSITIONS).read_text()) if (root / POSITIONS).exists() else {"test": {}}
    )
    runs = positions["test"]

    def run_f1(model: str, split: str) -> Optional[float]:
        return runs.get(model, {}).get(split, {}).get("seqeval_f")

    rows: List[Dict[str, Optional[float]]] = []
    for dataset in DATASETS:
        row = _metrics_row(root / "metrics" / dataset, METRICS_FILES)
        row["SpanDec v2, paper loss"] = (
            run_f1("spandec_v2", "sentences") if dataset == "conllpp" else None
        )
        for column, model in DEFAULT.items():
            row[column] = _f1(
                root / ABLATIONS / f"{dataset}_400" / f"evaluate_{model}_sentences.json"
            )
        rows.append(row)
    conllpp_documents: Dict[str, Optional[float]] = {
        "token classification": run_f1("token_cls", "documents"),
        "SpanDec v1": run_f1("spandec_v1", "documents"),
        "SpanDec v2, paper loss": run_f1("spandec_v2", "documents"),
        "**SpanDec**": _f1(root / ABLATIONS / "conllpp_400" / "evaluate_spandec_documents.json"),
    }
    ontonotes = root / ABLATIONS / "ontonotes5_400"
    ontonotes_documents: Dict[str, Optional[float]] = {
        "token classification": _f1(ontonotes / "evaluate_token_cls_documents.json"),
        "**SpanDec**": _f1(ontonotes / "evaluate_spandec_documents.json"),
    }
    documents = {
        "CoNLL++ whole documents, trained on sentences": conllpp_documents,
        "OntoNotes 5 whole documents, trained on sentences": ontonotes_documents,
    }
    lines = [
        CAPTION,
        "",
        "| benchmark | " + " | ".join(COLUMNS) + " |",
        "|---|" + "---:|" * len(COLUMNS),
    ]
    converged = _file_rows(root, CONVERGED_ROWS)
    if converged:
        lines[0] += " " + CONVERGED_CAPTION
    mixed_converged = _file_rows(root, MIXED_CONVERGED_ROWS)
    if mixed_converged:
        lines[0] += " " + MIXED_CONVERGED_CAPTION
    mixed = {}
    for split, label in MIXED_ROWS.items():
        row = {"**SpanDec**": _f1(root / MIXED / f"evaluate_spandec_mixed128_{split}.json")}
        if _evaluated(row):
            mixed[label] = row
    if mixed:
        lines[0] += " " + mixed_caption(root)
    labelled = list(zip(DATASETS.values(), rows)) + list(documents.items())
    labelled += list(converged.items()) + list(mixed.items()) + list(mixed_converged.items())
    for label, row in labelled:
        cells = (_cell(row.get(column)) for column in COLUMNS)
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines + ["", speed(root)])


def mixed_caption(root: Path) -> str:
    """What the "trained on sentences and chunks" rows are, with their baseline."""
    base = {
        split: _cell(_f1(root / MIXED_BASELINE / f"evaluate_spandec_near_{split}.json"))
        for split in MIXED_ROWS
    }
    return (
        'The "trained on sentences and chunks" rows are the current default recipe (O spans near '
        "gold always decoded, far ones sampled) after 400 steps on `--granularity mixed "
        "--max-tokens 128` (half the training chunks of up to 128 tokens kept whole, the rest split "
        f"into sentences; [{MIXED.as_posix()}]({MIXED.as_posix()}/)); the same recipe trained on "
        f"sentences scores {base['sentences']} on sentences and {base['documents']} on whole "
        f"documents ([{MIXED_BASELINE.as_posix()}]({MIXED_BASELINE.as_posix()}/))."
    )


def _ratios(path: Path, keys: List[str]) -> str:
    models = json.loads(path.read_text())["datasets"]["conllpp"]["models"]
    return ", ".join(
        f"{models[key]['label']} {models[key]['b8']['vs_token_cls']:.2f}×"
        for key in keys
        if key in models
    )


def _run(path: Path) -> str:
    run = json.loads(path.read_text())
    return (
        f"{run['date']}, {run['machine']}, {run['torch_threads']} torch threads, `{run['command']}`"
    )


def speed(root: Path = ROOT) -> str:
    """Speed ratios to token classification, from SPEED and SPEED_DEFAULTS."""
    missing = [str(p) for p in (SPEED, SPEED_DEFAULTS) if not (root / p).exists()]
    if missing:
        return f"Speed: no benchmark file ({', '.join(missing)})."
    return (
        "Speed, CoNLL++ test texts at batch 8, docs/s as a multiple of token classification's in the same "
        f"run. The defaults: {_ratios(root / SPEED_DEFAULTS, ['SF-SpanDec v2', 'SpanDec v2'])} "
        f"({_run(root / SPEED_DEFAULTS)}; [benchmark]({SPEED_DEFAULTS.parent.as_posix()}/benchmark.md)). "
        f"The v1 columns beside the other baselines: "
        f"{_ratios(root / SPEED, ['sf_spandec', 'spandec', 'spacy_ner', 'spanmarker'])} "
        f"({_run(root / SPEED)}; [benchmark]({SPEED.parent.as_posix()}/benchmark.md))."
    )


def render(readme: str, block: str) -> str:
    """`readme` with the text between the markers replaced by `block`."""
    if readme.count(START) != 1 or readme.count(END) != 1:
        raise ValueError(f"README.md must hold exactly one {START} ... {END} block.")
    head, rest = readme.split(START)
    _, tail = rest.split(END)
    return f"{head}{START}\n{block}\n{END}{tail}"


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--check", action="store_true", help="exit 1 if README.md's block is stale; write nothing"
    )
    args = parser.parse_args(argv)
    readme_path = ROOT / "README.md"
    readme = readme_path.read_text()
    wanted = render(readme, table())
    if args.check:
        if wanted != readme:
            print(
                "README.md's results block is stale: run python scripts/readme_results.py",
                file=sys.stderr,
            )
            return 1
        return 0
    readme_path.write_text(wanted)
    return 0


if __name__ == "__main__":
    sys.exit(main())
