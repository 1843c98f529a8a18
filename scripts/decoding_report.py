"""The decoding settings tuned on dev, side by side on test: no offset, a
global O offset, per-label offsets (micro and macro F1), and the calibration
of the span scores, from the `calibrate` and `spacy evaluate` outputs in
results/ablations/<dataset>_400/. Writes decoding.md there.

    python scripts/decoding_report.py --dataset conllpp
"""

import argparse
import json
from pathlib import Path
from typing import Any, Dict, List, Optional

PROJECT_DIR = Path(__file__).resolve().parents[1]
# (row, calibrate output or None, spacy evaluate output)
ROWS = [
    ("no offset (the default)", None, "evaluate_spandec_sentences.json"),
    ("global O offset", "calibration_global_bias.json", "evaluate_spandec_global_bias.json"),
    (
        "global + per-label offsets, micro F1",
        "calibration_label_biases.json",
        "evaluate_spandec_label_biases.json",
    ),
    (
        "global + per-label offsets, macro F1",
        "calibration_label_biases_macro.json",
        "evaluate_spandec_label_biases_macro.json",
    ),
    (
        "temperature fitted on dev (no offset)",
        "calibration_temperature.json",
        "evaluate_spandec_temperature.json",
    ),
]


def _load(path: Path) -> Optional[Dict[str, Any]]:
    return json.loads(path.read_text()) if path.exists() else None


def _pct(value: Optional[float]) -> str:
    return "–" if value is None else f"{100 * value:.2f}"


def report(dataset: str, root: Path = PROJECT_DIR) -> str:
    folder = root / "results" / "ablations" / f"{dataset}_400"
    rows = [
        (name, _load(folder / cal) if cal else None, _load(folder / ev)) for name, cal, ev in ROWS
    ]
    rows = [(name, cal, ev) for name, cal, ev in rows if ev is not None]
    global_bias = _load(folder / "calibration_global_bias.json")
    labels: List[str] = sorted(
        {label for _, _, ev in rows for label in ev.get("ents_per_type", {})}
    )
    lines = [
        f"# Decoding settings on {dataset}: tuned on dev, scored on test",
        "",
        f"Made by `python scripts/decoding_report.py --dataset {dataset}` from the `calibrate` (dev, first 1,000 "
        "docs) and `spacy evaluate` (test) outputs beside it; the commands are in results/README.md. The model is "
        "the default SpanDec at 400 steps. Per-label cells are test P / R.",
        "",
        "| setting | tuned values | dev F1 | test seqeval F1 | ECE of span scores | "
        + " | ".join(labels)
        + " |",
        "|---|---|---:|---:|---:|" + "---|" * len(labels),
    ]
    for name, cal, ev in rows:
        tuned, dev = "–", None
        if cal:
            parts = []
            if "outside_bias" in cal:
                parts.append(f"O {cal['outside_bias']:+g}")
            if cal.get("label_biases"):
                parts.append(
                    ", ".join(f"{k} {v:+g}" for k, v in sorted(cal["label_biases"].items()))
                )
            if "temperature" in cal:
                parts.append(f"T {cal['temperature']:g}")
            tuned = "; ".join(parts)
            dev = (cal.get("dev_after") or {}).get("seqeval_f")
            if dev is None and "bias_sweep" in cal:
                dev = max(r["seqeval_f"] for r in cal["bias_sweep"])
        if cal is None and global_bias and "bias_sweep" in global_bias:
            # No offset is the bias sweep's 0 row.
            dev = next(
                (r["seqeval_f"] for r in global_bias["bias_sweep"] if r["outside_bias"] == 0.0),
                None,
            )
        per = ev.get("ents_per_type", {})
        cells = [
            f"{100 * per[label]['p']:.1f} / {100 * per[label]['r']:.1f}" if label in per else "–"
            for label in labels
        ]
        ece = ev.get("spans_spandec_ece")
        lines.append(
            f"| {name} | {tuned} | {_pct(dev)} | {_pct(ev.get('seqeval_f'))} | "
            f"{'–' if ece is None else f'{ece:.3f}'} | " + " | ".join(cells) + " |"
        )
    return "\n".join(lines) + "\n"


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dataset", required=True)
    args = parser.parse_args(argv)
    text = report(args.dataset)
    path = PROJECT_DIR / "results" / "ablations" / f"{args.dataset}_400" / "decoding.md"
    path.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
