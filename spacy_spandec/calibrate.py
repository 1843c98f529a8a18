"""Tune the span-filter threshold on a dev set and store it in the pipeline.

SF probabilities are not calibrated, so the pruning threshold is chosen on
dev data: the highest threshold whose seqeval F1 is within `tolerance`
points of the best. The encoder runs once; only the span decoder reruns per
threshold. The chosen value is written to `config.cfg` of the output
pipeline, which is where `spacy.load` reads it.

    python -m spacy_spandec.calibrate training/model-best corpus/dev.spacy training/model-sf \
        --results results/calibration.json --plot results/calibration.png
"""
import argparse
import json
import shutil
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import spacy
from spacy.tokens import DocBin
from spacy.training import Example
from spacy.util import load_config

from .pipeline_component import SpanDecNER

DEFAULT_THRESHOLDS = (0.0, 0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)


def find_component(nlp: spacy.Language) -> str:
    names = [name for name, pipe in nlp.pipeline if isinstance(pipe, SpanDecNER)]
    if not names:
        raise ValueError("The pipeline has no spandec_ner component to calibrate.")
    return names[0]


def sweep(
    nlp: spacy.Language, examples: List[Example], thresholds: Sequence[float], name: str
) -> List[Dict[str, float]]:
    """Score every threshold; the upstream components run only once."""
    component = nlp.get_pipe(name)
    if not component.model.attrs.get("span_filter"):
        raise ValueError(
            f"'{name}' was trained without a span filter (span_filter = false): "
            "there is no threshold to calibrate."
        )
    position = nlp.pipe_names.index(name)
    before = [nlp.get_pipe(n) for n in nlp.pipe_names[:position]]
    after = [nlp.get_pipe(n) for n in nlp.pipe_names[position + 1 :]]
    docs = [eg.predicted for eg in examples]
    for pipe in before:
        docs = _run(pipe, docs)
    overwrite = component.overwrite_ents
    component.overwrite_ents = True
    rows = []
    try:
        for threshold in thresholds:
            component.sf_threshold = float(threshold)
            scored = _run(component, docs)
            for pipe in after:
                scored = _run(pipe, scored)
            scores = component.score([Example(d, eg.reference) for d, eg in zip(scored, examples)])
            rows.append(
                {
                    "threshold": float(threshold),
                    "seqeval_f": float(scores["seqeval_f"] or 0.0),
                    "ents_f": float(scores["ents_f"] or 0.0),
                    "kept_fraction": float(
                        scores[f"spans_{component.spans_key}_kept_fraction"] or 0.0
                    ),
                }
            )
    finally:
        component.overwrite_ents = overwrite
    return rows


def _run(pipe: object, docs: List) -> List:
    if hasattr(pipe, "pipe"):
        return list(pipe.pipe(docs))
    return [pipe(doc) for doc in docs]


def choose(rows: List[Dict[str, float]], tolerance: float) -> Dict[str, float]:
    """Highest threshold whose F1 is within `tolerance` F1 points of the best."""
    best = max(row["seqeval_f"] for row in rows)
    ok = [row for row in rows if row["seqeval_f"] >= best - tolerance / 100.0]
    return max(ok, key=lambda row: row["threshold"])


def write_threshold(model_dir: Path, output_dir: Path, name: str, threshold: float) -> None:
    if output_dir.resolve() != model_dir.resolve():
        if output_dir.exists():
            shutil.rmtree(output_dir)
        shutil.copytree(model_dir, output_dir)
    config = load_config(output_dir / "config.cfg", interpolate=False)
    config["components"][name]["sf_threshold"] = float(threshold)
    config.to_disk(output_dir / "config.cfg")


def plot(rows: List[Dict[str, float]], chosen: Dict[str, float], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = [r["threshold"] for r in rows]
    fig, ax1 = plt.subplots(figsize=(6, 4))
    ax1.plot(xs, [100 * r["seqeval_f"] for r in rows], "o-", color="tab:blue", label="dev F1")
    ax1.set_xlabel("sf_threshold")
    ax1.set_ylabel("seqeval F1 (dev)", color="tab:blue")
    ax2 = ax1.twinx()
    ax2.plot(xs, [100 * r["kept_fraction"] for r in rows], "s--", color="tab:orange")
    ax2.set_ylabel("candidate spans kept (%)", color="tab:orange")
    ax1.axvline(chosen["threshold"], color="grey", linestyle=":")
    ax1.set_title(f"SF threshold sweep (chosen {chosen['threshold']:g})")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", type=Path, help="trained pipeline directory")
    parser.add_argument("dev", type=Path, help="dev DocBin (.spacy)")
    parser.add_argument("output", type=Path, help="pipeline directory to write (may equal model)")
    parser.add_argument("--thresholds", default=",".join(str(t) for t in DEFAULT_THRESHOLDS))
    parser.add_argument("--tolerance", type=float, default=0.2, help="F1 points below the best allowed")
    parser.add_argument("--limit", type=int, default=0, help="use the first N dev docs (0 = all)")
    parser.add_argument("--results", type=Path, default=None, help="JSON of the sweep")
    parser.add_argument("--plot", type=Path, default=None, help="PNG of F1 and kept fraction")
    args = parser.parse_args(argv)
    nlp = spacy.load(args.model)
    name = find_component(nlp)
    docs = list(DocBin().from_disk(args.dev).get_docs(nlp.vocab))
    if args.limit:
        docs = docs[: args.limit]
    examples = [Example(nlp.make_doc(doc.text), doc) for doc in docs]
    thresholds = [float(t) for t in args.thresholds.split(",") if t.strip()]
    rows = sweep(nlp, examples, thresholds, name)
    chosen = choose(rows, args.tolerance)
    write_threshold(args.model, args.output, name, chosen["threshold"])
    result = {"component": name, "tolerance_f1_points": args.tolerance, "chosen": chosen, "sweep": rows}
    print(json.dumps(result, indent=2))
    if args.results:
        args.results.parent.mkdir(parents=True, exist_ok=True)
        args.results.write_text(json.dumps(result, indent=2))
    if args.plot:
        args.plot.parent.mkdir(parents=True, exist_ok=True)
        plot(rows, chosen, args.plot)


if __name__ == "__main__":
    main()
