"""Write the meta.json `spacy package --meta-path` uses: the trained model's
meta plus a requirement on the installed spacy-spandec.

Why: the packaged pipeline needs the plugin's registered factories at
`spacy.load` time; spaCy only adds requirements it can trace to installed
distributions, so the requirement is stated explicitly here.

    python scripts/package_meta.py MODEL_DIR OUTPUT_JSON [METRICS_JSON DATASET [CONVERSION_REPORT]]

With METRICS_JSON (from `spacy evaluate`) the model card (meta description,
which `spacy package` turns into the package README) states the data, the
test scores and the span filter's kept-span fraction. A CONVERSION_REPORT
that exists (custom_data.py's, for a run on your own data) names the files
and says whether the scores are on test or, without a test file, on dev.
"""

import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Optional, Tuple

import srsly
from spacy.util import get_minor_version_range, load_config

DISTRIBUTION = "spacy-spandec"


def plugin_requirement() -> str:
    try:
        installed = version(DISTRIBUTION)
    except PackageNotFoundError:  # running from a source checkout
        from spacy_spandec.about import __version__ as installed
    return DISTRIBUTION + get_minor_version_range(installed)


DATA = {
    "conllpp": "CoNLL++ (CoNLL-2003 train/dev, corrected test; CrossWeigh)",
    "crossner": "CrossNER: CoNLL-2003 train+dev relabelled + 5 domains' train+dev; test = 5 domain tests",
    "ontonotes5": "OntoNotes 5.0 English, CoNLL-2012 split (LDC2013T19)",
    "bc5cdr": "BC5CDR (BioCreative V CDR, Chemical/Disease; MTL-Bioinformatics-2016 IOB files)",
}


def data_description(dataset: str, conversion_report: Optional[Path]) -> Tuple[str, str]:
    """(what the data is, the split `spacy evaluate` scored)."""
    if conversion_report is None or not conversion_report.exists():
        return DATA.get(dataset, dataset), "test"
    report = srsly.read_json(conversion_report)
    files = "; ".join(
        f"{split} {c['file']} ({c['docs']} docs, {c['spans_total']} spans)"
        for split, c in report["splits"].items()
    )
    return f"your own annotations: {files}", report["evaluated_on"]


def model_card(
    model_dir: Path, metrics_path: Path, dataset: str, conversion_report: Optional[Path] = None
) -> str:
    data, scored = data_description(dataset, conversion_report)
    metrics = srsly.read_json(metrics_path)
    config = load_config(model_dir / "config.cfg", interpolate=False)
    sf = [
        c.get("sf_threshold")
        for c in config["components"].values()
        if c.get("factory") == "spandec_ner"
    ]
    kept = metrics.get("spans_spandec_kept_fraction")
    lines = [
        "Span-based NER with spacy-spandec (SpanDec / SF-SpanDec, arXiv 2604.20447).",
        f"Data: {data}.",
        f"{scored.capitalize()} scores (`spacy evaluate`"
        f"{'' if scored == 'test' else '; no test file, and dev also chose the checkpoint'}): "
        f"seqeval F1 {100 * (metrics.get('seqeval_f') or 0):.2f}, ents P/R/F "
        f"{100 * (metrics.get('ents_p') or 0):.2f}/{100 * (metrics.get('ents_r') or 0):.2f}/"
        f"{100 * (metrics.get('ents_f') or 0):.2f}.",
    ]
    if kept is not None:
        lines.append(
            f"Span filter: sf_threshold {sf[0] if sf else 0}, {100 * kept:.1f}% of candidate "
            f"spans decoded on the {scored} set."
        )
    return " ".join(lines)


def main(
    model_dir: str, output: str, metrics: str = "", dataset: str = "", conversion_report: str = ""
) -> None:
    meta = srsly.read_json(Path(model_dir) / "meta.json")
    others = [
        r for r in meta.get("requirements", []) if not r.replace("_", "-").startswith(DISTRIBUTION)
    ]
    meta["requirements"] = [plugin_requirement()] + others
    if metrics and Path(metrics).exists():
        meta["description"] = model_card(
            Path(model_dir),
            Path(metrics),
            dataset,
            Path(conversion_report) if conversion_report else None,
        )
    srsly.write_json(output, meta)
    print(f"{output}: requirements {meta['requirements']}")


if __name__ == "__main__":
    if len(sys.argv) not in (3, 5, 6):
        sys.exit(__doc__)
    main(*sys.argv[1:])
