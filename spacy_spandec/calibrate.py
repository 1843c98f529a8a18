"""Tune the span-filter threshold (and optionally the O bias) on a dev set
and store them in the pipeline.

SF probabilities are not calibrated, so the pruning threshold is chosen on
dev data: the highest threshold whose seqeval F1 is within `tolerance`
points of the best. With `--outside-biases`, the offset of the O logit
(`outside_bias`) is tuned first, without pruning: the value with the best dev
F1 (the one nearest 0 on ties). With `--label-biases`, an offset per label is
tuned next, by coordinate ascent over the labels (micro F1, or `--average
macro`). `--temperature` fits the divisor of the logits in the scores (not
in the decision) so that a predicted span's score is the chance it is gold
(lowest NLL of that on dev). The
encoder runs once; only the span decoder reruns per value. The chosen values are written to `config.cfg` of the
output pipeline, which is where `spacy.load` reads them; `--bias-output`
writes the bias into a second pipeline too (e.g. the unpruned SpanDec model,
in place), so both variants decode alike.

    python -m spacy_spandec calibrate training/model-best corpus/dev.spacy training/model-sf \
        --results results/calibration.json --plot results/calibration.png \
        [--outside-biases=0,-0.5,-1,-2 --bias-output training/model-best]
        [--label-biases=-1,-0.5,0,0.5,1 [--average macro]] [--temperature]
"""

import argparse
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy
import spacy
from spacy.tokens import Doc, DocBin
from spacy.training import Example
from spacy.util import load_config, minibatch

from .pipeline_component import softmax, spandec_components

DEFAULT_THRESHOLDS = (0.0, 0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)


def find_component(nlp: spacy.Language) -> str:
    components = spandec_components(nlp)
    if not components:
        raise ValueError("The pipeline has no spandec_ner component to calibrate.")
    return components[0][0]


@dataclass
class Decoded:
    """The dev set decoded once with every candidate span (sf_threshold 0).
    The offsets and the temperature act only when annotations are set, so
    each of their values is scored by re-annotating these outputs."""

    examples: List[Example]
    docs: List[Doc]
    batches: List[Tuple[List[Doc], Any]]
    after: List[Any]


def _upstream(
    nlp: spacy.Language, examples: List[Example], name: str
) -> Tuple[List[Doc], List[Any]]:
    """The docs after the components before `name` (run once), and the components after it."""
    position = nlp.pipe_names.index(name)
    docs = [eg.predicted for eg in examples]
    for pipe_name in nlp.pipe_names[:position]:
        docs = _run(nlp.get_pipe(pipe_name), docs)
    return docs, [nlp.get_pipe(n) for n in nlp.pipe_names[position + 1 :]]


def decode(nlp: spacy.Language, examples: List[Example], name: str) -> Decoded:
    """Run the pipeline up to `name` and its decoder once, in batches of 128."""
    component = nlp.get_pipe(name)
    docs, after = _upstream(nlp, examples, name)
    threshold = component.sf_threshold
    component.sf_threshold = 0.0
    try:
        batches = [(batch, component.predict(batch)) for batch in minibatch(docs, 128)]
    finally:
        component.sf_threshold = threshold
    return Decoded(examples, docs, batches, after)


def rescore(component: Any, decoded: Decoded) -> Dict[str, Any]:
    """The component's scores of the decoded dev set under its current settings."""
    overwrite = component.overwrite_ents
    component.overwrite_ents = True
    try:
        for batch, output in decoded.batches:
            component.set_annotations(batch, output)
        scored = decoded.docs
        for pipe in decoded.after:
            scored = _run(pipe, scored)
    finally:
        component.overwrite_ents = overwrite
    return component.score([Example(d, eg.reference) for d, eg in zip(scored, decoded.examples)])


def sweep(
    nlp: spacy.Language,
    examples: List[Example],
    thresholds: Sequence[float],
    name: str,
    setting: str = "sf_threshold",
    decoded: Optional[Decoded] = None,
) -> List[Dict[str, float]]:
    """Score every value of `setting` (sf_threshold or outside_bias); the
    upstream components run only once, and for outside_bias the decoder too
    (`decoded`, made here if not given). Rows name the value `threshold` or
    `outside_bias`."""
    component = nlp.get_pipe(name)
    if setting not in ("sf_threshold", "outside_bias"):
        raise ValueError(f"Can only sweep sf_threshold or outside_bias, not {setting!r}.")
    key = "threshold" if setting == "sf_threshold" else "outside_bias"
    if setting == "sf_threshold" and not component.model.attrs.get("span_filter"):
        raise ValueError(
            f"'{name}' was trained without a span filter (span_filter = false): "
            "there is no threshold to calibrate."
        )
    if setting == "outside_bias":
        decoded = decoded or decode(nlp, examples, name)
    else:
        docs, after = _upstream(nlp, examples, name)
    overwrite, original = component.overwrite_ents, getattr(component, setting)
    component.overwrite_ents = True
    rows = []
    try:
        for threshold in thresholds:
            setattr(component, setting, float(threshold))
            if decoded is not None:
                scores = rescore(component, decoded)
            else:
                scored = _run(component, docs)
                for pipe in after:
                    scored = _run(pipe, scored)
                scores = component.score(
                    [Example(d, eg.reference) for d, eg in zip(scored, examples)]
                )
            rows.append(
                {
                    key: float(threshold),
                    "seqeval_f": float(scores["seqeval_f"] or 0.0),
                    "ents_f": float(scores["ents_f"] or 0.0),
                    "kept_fraction": float(
                        scores[f"spans_{component.spans_key}_kept_fraction"] or 0.0
                    ),
                }
            )
    finally:
        component.overwrite_ents = overwrite
        setattr(component, setting, original)
    return rows


def f1_of(scores: Dict[str, object], average: str) -> float:
    """Micro seqeval F1, or the mean of the per-label ents F1 (macro)."""
    if average == "micro":
        return float(scores["seqeval_f"] or 0.0)
    per_type = scores.get("ents_per_type") or {}
    return sum(v["f"] for v in per_type.values()) / len(per_type) if per_type else 0.0


def tune_label_biases(
    component: Any,
    decoded: Decoded,
    grid: Sequence[float],
    average: str = "micro",
    rounds: int = 2,
) -> Tuple[Dict[str, float], List[Dict[str, object]], Dict[str, Any], Dict[str, Any]]:
    """Per-label logit offsets that maximise dev F1: each label in turn takes
    the grid value with the best F1 while the others stay fixed, for `rounds`
    passes (ties keep the value nearest 0). Returns the offsets, every scored
    step, and the dev scores before and with them."""
    if average not in ("micro", "macro"):
        raise ValueError(f"average must be 'micro' or 'macro', not {average!r}.")
    original = component.label_biases
    before = rescore(component, decoded)
    biases = {label: float(original.get(label, 0.0)) for label in component.labels}
    steps: List[Dict[str, object]] = []
    try:
        for round_ in range(rounds):
            for label in component.labels:
                tried = []
                for value in grid:
                    component.label_biases = {**biases, label: float(value)}
                    scores = rescore(component, decoded)
                    tried.append((f1_of(scores, average), -abs(value), float(value)))
                    steps.append(
                        {
                            "round": round_,
                            "label": label,
                            "bias": float(value),
                            "f1": f1_of(scores, average),
                            "seqeval_f": float(scores["seqeval_f"] or 0.0),
                        }
                    )
                biases[label] = max(tried)[2]
        component.label_biases = biases
        after = rescore(component, decoded)
    finally:
        component.label_biases = original
    return biases, steps, before, after


TEMPERATURES = tuple(float(t) for t in numpy.round(numpy.geomspace(0.25, 8.0, 41), 4))


def fit_temperature(
    component: Any, decoded: Decoded, grid: Sequence[float] = TEMPERATURES
) -> Tuple[float, List[Dict[str, float]]]:
    """The temperature that makes the scores of the predicted spans honest:
    the lowest negative log-likelihood, on dev, of "this predicted span is
    gold" under its score. (The NLL of every candidate's class would be ruled
    by the easy O candidates, nearly all of them.) The decision, the argmax of the offset
    logits, does not depend on it. Returns it and the NLL of every value."""
    offsets = component._decoding_offsets()
    logits, targets, start = [], [], 0
    for batch, output in decoded.batches:
        batch_logits = component.model.ops.to_numpy(output.logits)
        logits.append(batch_logits + offsets if offsets is not None else batch_logits)
        targets.append(component._targets(decoded.examples[start : start + len(batch)], output)[0])
        start += len(batch)
    all_logits, all_targets = numpy.concatenate(logits), numpy.concatenate(targets)
    best = all_logits.argmax(axis=1)
    spans = best > 0
    z, best, correct = (
        all_logits[spans],
        best[spans],
        (all_targets[spans] == best[spans]).astype("float64"),
    )
    rows = numpy.arange(z.shape[0])
    nll = []
    for t in grid:
        score = numpy.clip(softmax(z / t)[rows, best].astype("float64"), 1e-7, 1 - 1e-7)
        value = (
            -(correct * numpy.log(score) + (1 - correct) * numpy.log(1 - score)).mean()
            if len(rows)
            else 0.0
        )
        nll.append({"temperature": float(t), "nll": float(value)})
    return min(nll, key=lambda r: r["nll"])["temperature"], nll


def per_label(scores: Dict[str, object]) -> Dict[str, Dict[str, float]]:
    """Per-label P/R/F of a score dict (ents_per_type), rounded for reports."""
    return {
        label: {k: round(float(v), 4) for k, v in prf.items()}
        for label, prf in (scores.get("ents_per_type") or {}).items()
    }


def _run(pipe: object, docs: List) -> List:
    if hasattr(pipe, "pipe"):
        return list(pipe.pipe(docs))
    return [pipe(doc) for doc in docs]


def choose(rows: List[Dict[str, float]], tolerance: float) -> Dict[str, float]:
    """Highest threshold whose F1 is within `tolerance` F1 points of the best."""
    best = max(row["seqeval_f"] for row in rows)
    ok = [row for row in rows if row["seqeval_f"] >= best - tolerance / 100.0]
    return max(ok, key=lambda row: row["threshold"])


def choose_bias(rows: List[Dict[str, float]]) -> Dict[str, float]:
    """Best dev F1; among equals, the bias nearest 0 (the plain argmax)."""
    return max(rows, key=lambda row: (row["seqeval_f"], -abs(row["outside_bias"])))


def write_settings(
    model_dir: Path, output_dir: Path, name: str, settings: Dict[str, object]
) -> None:
    """Copy the pipeline to `output_dir` (unless it is the same) and write
    `settings` (component config values) into its config.cfg."""
    if output_dir.resolve() != model_dir.resolve():
        if output_dir.exists():
            shutil.rmtree(output_dir)
        shutil.copytree(model_dir, output_dir)
    config = load_config(output_dir / "config.cfg", interpolate=False)
    for key, value in settings.items():
        config["components"][name][key] = dict(value) if isinstance(value, dict) else float(value)
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
    parser = argparse.ArgumentParser(
        prog="python -m spacy_spandec calibrate", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("model", type=Path, help="trained pipeline directory")
    parser.add_argument("dev", type=Path, help="dev DocBin (.spacy)")
    parser.add_argument("output", type=Path, help="pipeline directory to write (may equal model)")
    parser.add_argument("--thresholds", default=",".join(str(t) for t in DEFAULT_THRESHOLDS))
    parser.add_argument(
        "--outside-biases",
        default="",
        help="comma-separated O-logit offsets to tune first (e.g. 0,-0.5,-1,-2); empty: keep the model's",
    )
    parser.add_argument(
        "--bias-output",
        type=Path,
        default=None,
        help="also write the tuned outside_bias into this pipeline (may equal model)",
    )
    parser.add_argument(
        "--label-biases",
        default="",
        help="comma-separated logit offsets to try per label after the O bias (e.g. -1,-0.5,0,0.5,1); "
        "empty: keep the model's",
    )
    parser.add_argument(
        "--average",
        choices=["micro", "macro"],
        default="micro",
        help="F1 that --label-biases maximises",
    )
    parser.add_argument(
        "--temperature",
        action="store_true",
        help="fit the scores' temperature on dev (a predicted span's score = the chance it is gold) and write it",
    )
    parser.add_argument(
        "--tolerance", type=float, default=0.2, help="F1 points below the best allowed"
    )
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
    biases = [float(b) for b in args.outside_biases.split(",") if b.strip()]
    result: Dict[str, object] = {"component": name}
    component = nlp.get_pipe(name)
    label_grid = [float(b) for b in args.label_biases.split(",") if b.strip()]
    # The offsets and the temperature are tuned on one decoding of dev.
    decoded = decode(nlp, examples, name) if biases or label_grid or args.temperature else None
    if biases:
        bias_rows = sweep(nlp, examples, biases, name, setting="outside_bias", decoded=decoded)
        component.outside_bias = choose_bias(bias_rows)["outside_bias"]
        result.update({"outside_bias": component.outside_bias, "bias_sweep": bias_rows})
    if label_grid:
        component.label_biases, steps, before, after = tune_label_biases(
            component, decoded, label_grid, args.average
        )
        result.update(
            {
                "label_biases": component.label_biases,
                "average": args.average,
                "label_bias_steps": steps,
                "dev_before": {"seqeval_f": before["seqeval_f"], "per_label": per_label(before)},
                "dev_after": {"seqeval_f": after["seqeval_f"], "per_label": per_label(after)},
            }
        )
    if args.temperature:
        component.temperature, nll = fit_temperature(component, decoded)
        result.update({"temperature": component.temperature, "temperature_nll": nll})
    rows = sweep(nlp, examples, thresholds, name)
    chosen = choose(rows, args.tolerance)
    decoding: Dict[str, object] = {"outside_bias": component.outside_bias}
    if label_grid:
        decoding["label_biases"] = component.label_biases
    if args.temperature:
        decoding["temperature"] = component.temperature
    settings = {"sf_threshold": chosen["threshold"], **decoding}
    # Write the bias-only pipeline first: it may be the model directory the
    # output is copied from.
    if args.bias_output is not None:
        write_settings(args.bias_output, args.bias_output, name, decoding)
    write_settings(args.model, args.output, name, settings)
    result.update({"tolerance_f1_points": args.tolerance, "chosen": chosen, "sweep": rows})
    print(json.dumps(result, indent=2))
    if args.results:
        args.results.parent.mkdir(parents=True, exist_ok=True)
        args.results.write_text(json.dumps(result, indent=2))
    if args.plot:
        args.plot.parent.mkdir(parents=True, exist_ok=True)
        plot(rows, chosen, args.plot)


if __name__ == "__main__":
    main()
