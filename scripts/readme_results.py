"""Write the README's results table from the committed result files.

The block between the README's `<!-- results:start -->` and
`<!-- results:end -->` markers is made here and nowhere else: one table of
test seqeval F1, the default recipe's rows first (metrics/<dataset>/<config>.json
and <config>_documents.json from the project's `evaluate` and
`evaluate-documents`; the converged models in results/convergence/), then the
rows of the earlier recipe, sentences in batches of 32, kept for comparison;
then the speed ratios of the side-by-side benchmark in SPEED. A row is shown
once one of its files exists; a missing file leaves its cell at "–", never a
copied number.

    python scripts/readme_results.py           # rewrite the block in README.md
    python scripts/readme_results.py --check   # exit 1 if the block is stale
"""

import argparse
import json
import sys
from pathlib import Path
from typing import Dict, List, Optional, Union

ROOT = Path(__file__).resolve().parent.parent
START, END = "<!-- results:start -->", "<!-- results:end -->"
COLUMNS = {
    "spaCy `ner`": "spacy_ner",
    "token classification": "token_cls",
    "**SpanDec**": "spandec",
    "**SF-SpanDec**": "sf_spandec",
}  # column: the config's file name
# A row is a path pattern ({} = the column's file name) or a path per column;
# "file.json#a/b" is the seqeval F1 (in percent) under a/b of a results file.
Row = Union[str, Dict[str, str]]
CONVERGED = "results/convergence/conllpp"
DEFAULT_ROWS: Dict[str, Row] = {
    "CoNLL++ sentences, CPU budget": "metrics/conllpp/{}.json",
    "CoNLL++ whole documents, CPU budget": "metrics/conllpp/{}_documents.json",
    "BC5CDR, CPU budget": "metrics/bc5cdr/{}.json",
    "OntoNotes 5 sentences, CPU budget": "metrics/ontonotes5/{}.json",
    "OntoNotes 5 whole documents, CPU budget": "metrics/ontonotes5/{}_documents.json",
    "CrossNER (5 domains), CPU budget": "metrics/crossner/{}.json",
    "CoNLL++ sentences, converged": CONVERGED + "/evaluate_{}_sentences.json",
    "CoNLL++ whole documents, converged": CONVERGED + "/evaluate_{}_documents.json",
    "CoNLL++ sentences, converged, seed 1": "metrics/conllpp_seed1_converge/{}.json",
    "CoNLL++ whole documents, converged, seed 1": "metrics/conllpp_seed1_converge/{}_documents.json",
}
EARLIER = "results/archive/metrics_400_sentences32"
EARLIER_ROWS: Dict[str, Row] = {
    "CoNLL++ sentences, CPU budget": {
        "spaCy `ner`": EARLIER + "/conllpp/spacy_ner.json",
        "token classification": EARLIER + "/conllpp/token_cls.json",
        "**SpanDec**": "results/ablations/conllpp_400_recipe/evaluate_spandec_near_sentences.json",
    },
    "CoNLL++ whole documents, CPU budget": {
        "token classification": "results/positions/conllpp_400.json#test/token_cls/documents",
        "**SpanDec**": "results/ablations/conllpp_400_recipe/evaluate_spandec_near_documents.json",
    },
    "BC5CDR, CPU budget": {
        "spaCy `ner`": EARLIER + "/bc5cdr/spacy_ner.json",
        "token classification": EARLIER + "/bc5cdr/token_cls.json",
        "**SpanDec**": "results/ablations/bc5cdr_400/evaluate_spandec_near_sentences.json",
    },
    "OntoNotes 5 sentences, CPU budget": {
        "spaCy `ner`": EARLIER + "/ontonotes5/spacy_ner.json",
        "token classification": EARLIER + "/ontonotes5/token_cls.json",
        "**SpanDec**": "results/ablations/ontonotes5_400/evaluate_spandec_sentences.json",
        "**SF-SpanDec**": "results/ablations/ontonotes5_400/evaluate_sf_spandec_sentences.json",
    },
    "OntoNotes 5 whole documents, CPU budget": "results/ablations/ontonotes5_400/evaluate_{}_documents.json",
    "CrossNER (5 domains), CPU budget": {
        "token classification": EARLIER + "/crossner/token_cls.json"
    },
    "CoNLL++ sentences, converged": "results/archive/metrics_converged_sentences32/conllpp/{}.json",
    "CoNLL++ whole documents, converged": "results/archive/convergence_sentences32/conllpp/evaluate_{}_documents.json",
    "BC5CDR, converged": "results/archive/metrics_converged_sentences32/bc5cdr/{}.json",
}
SPEED = Path("results/benchmark/conllpp/benchmark.json")  # the v1 models beside the baselines
SPEED_DEFAULTS = Path(
    "results/benchmark/conllpp_positions/benchmark.json"
)  # v2 (the defaults) and v1
CAPTION = (
    "Test seqeval F1 (%) on the offline MiniLM-L6 encoder, 2-core CPU; SpanDec's O offset and "
    "SF-SpanDec's threshold as `calibrate` chose them on dev (results/calibration/). "
    "**Default recipe** (the configs and `spacy project run`): trained on CoNLL++ and "
    "OntoNotes sentences and chunks of up to 128 tokens (`--vars.granularity mixed`; files "
    "without document marks give sentences) in batches of up to 600 padded tokens "
    "(`spacy.batch_by_padded.v1`), scored on the test sentences and on the test set passed as whole "
    "documents (`evaluate-documents`). CPU budget: that of `spacy project run all`, the text of "
    "400 batches of 32 sentences (metrics/<dataset>/). Converged: until dev F1 "
    "rises by less than 0.2 over two epochs, at most 10 epochs (`--budget converge`; curves: "
    f"[{CONVERGED}]({CONVERGED}/)). **Earlier recipe**: trained on sentences in batches "
    "of 32; SpanDec at 400 steps is the same component recipe (O spans near gold decoded, far "
    "ones sampled) except on OntoNotes (every O span, weighted 0.3); converged curves: "
    "[results/archive/convergence_sentences32](results/archive/convergence_sentences32/). Commands, dates and machines: "
    "[results/README.md](results/README.md)."
)


def _f1(path: Path) -> Optional[float]:
    """seqeval F1 in percent of a `spacy evaluate` output (a fraction there),
    or of `file.json#a/b` (in percent there); None if missing."""
    path, _, pointer = str(path).partition("#")
    if not Path(path).exists():
        return None
    data = json.loads(Path(path).read_text())
    if not pointer:
        return data["seqeval_f"] * 100
    for key in pointer.split("/"):
        data = data.get(key, {})
    return data.get("seqeval_f")


def _cell(value: Optional[float]) -> str:
    return "–" if value is None else f"{value:.1f}"


def _rows(root: Path, rows: Dict[str, Row]) -> List[str]:
    """The markdown rows of `rows` that have a scored model."""
    lines = []
    for label, row in rows.items():
        paths = {
            column: row.format(name) if isinstance(row, str) else row.get(column)
            for column, name in COLUMNS.items()
        }
        scores = [_f1(root / path) if path else None for path in paths.values()]
        if any(score is not None for score in scores):
            lines.append(f"| {label} | " + " | ".join(_cell(score) for score in scores) + " |")
    return lines


def table(root: Path = ROOT) -> str:
    """The markdown block, caption and table, from the files under `root`."""
    lines = [
        CAPTION,
        "",
        "| test set | " + " | ".join(COLUMNS) + " |",
        "|---|" + "---:|" * len(COLUMNS),
    ]
    for title, rows in (
        ("**Default recipe**", DEFAULT_ROWS),
        ("**Earlier recipe: sentences, batches of 32**", EARLIER_ROWS),
    ):
        scored = _rows(root, rows)
        if scored:
            lines += [f"| {title} |" + " |" * len(COLUMNS)] + scored
    return "\n".join(lines + ["", speed(root)])


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
        f"The earlier SpanDecoder.v1 (window positions) beside the other baselines: "
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
