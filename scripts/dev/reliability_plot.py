"""Reliability diagram of span scores from `spacy evaluate` outputs: per
score bin, the share of predicted spans that are right against their mean
score, with each file's expected calibration error (spans_<key>_ece).

    python scripts/dev/reliability_plot.py results/ablations/conllpp_400/evaluate_spandec_sentences.json \
        [more.json ...] --labels "SpanDec" [...] --output results/ablations/conllpp_400/reliability.png
"""

import argparse
import json
from pathlib import Path
from typing import List, Optional


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("files", type=Path, nargs="+", help="spacy evaluate --output JSON files")
    parser.add_argument("--labels", nargs="*", default=None)
    parser.add_argument("--spans-key", default="spandec")
    parser.add_argument("--output", type=Path, required=True)
    args = parser.parse_args(argv)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = args.labels or [f.stem for f in args.files]
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="perfectly calibrated")
    for path, label in zip(args.files, labels):
        scores = json.loads(path.read_text())
        bins = [b for b in scores[f"spans_{args.spans_key}_reliability"] if b["n"]]
        n = sum(b["n"] for b in bins)
        ax.plot(
            [b["confidence"] for b in bins],
            [b["accuracy"] for b in bins],
            "o-",
            label=f"{label}: ECE {scores[f'spans_{args.spans_key}_ece']:.3f} ({n} spans)",
        )
    ax.set_xlabel("mean score of the spans in the bin")
    ax.set_ylabel("share of those spans that are gold")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.output, dpi=110)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
