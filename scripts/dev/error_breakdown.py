"""Where the entity errors of several pipelines differ: per label, each missed
gold entity and each wrong prediction sorted by kind (wrong type, wrong
boundary, both, nothing overlapping), on one test set.

    python scripts/dev/error_breakdown.py corpus/conllpp/test.spacy \
        --model spacy_ner=training/conllpp_converge/spacy_ner/model-best \
        --model spandec=training/conllpp_converge/spandec/model-best \
        --output results/ablations/conllpp_converged_errors.json

Each pipeline reads the test texts as `spacy evaluate` does (its own
tokenizer); entities are compared by character offsets. The exact-match F1
here came out equal to `spacy evaluate`'s seqeval_f for each of the four
converged CoNLL++ models (its `ents_f` counts a little differently).
Accuracy only: no timings.
"""

import argparse
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Tuple

import spacy
from spacy.tokens import DocBin

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from run_info import machine, now  # noqa: E402

Entity = Tuple[int, int, str]  # start_char, end_char, label
# How a gold entity was missed, or a prediction was wrong, by what overlaps it.
KINDS = ("type", "boundary", "boundary_and_type", "none")


def kind(entity: Entity, others: Iterable[Entity]) -> Tuple[str, Optional[str]]:
    """The closest kind of match `entity` has among `others` (which hold no
    exact match), and for a type error the label found at its boundaries."""
    start, end, label = entity
    overlapping = [o for o in others if o[0] < end and start < o[1]]
    same_span = next((o[2] for o in overlapping if o[0] == start and o[1] == end), None)
    if same_span is not None:
        return "type", same_span
    if any(o[2] == label for o in overlapping):
        return "boundary", None
    return ("boundary_and_type" if overlapping else "none"), None


def breakdown(gold: List[List[Entity]], predicted: List[List[Entity]]) -> Dict[str, Dict]:
    """Per label (and "all"): tp, fp, fn, P/R/F1, and the kinds of fn and fp;
    under "confusions", gold -> predicted label of the type errors."""
    counts: Dict[str, Counter] = {}
    confusions: Counter = Counter()

    def count(label: str, key: str) -> None:
        for name in (label, "all"):
            counts.setdefault(name, Counter())[key] += 1

    for gold_ents, pred_ents in zip(gold, predicted):
        exact = set(gold_ents) & set(pred_ents)
        for entity in gold_ents:
            if entity in exact:
                count(entity[2], "tp")
            else:
                missed, predicted_label = kind(entity, pred_ents)
                count(entity[2], "fn")
                count(entity[2], "fn_" + missed)
                if predicted_label is not None:
                    confusions[f"{entity[2]} -> {predicted_label}"] += 1
        for entity in pred_ents:
            if entity not in exact:
                count(entity[2], "fp")
                count(entity[2], "fp_" + kind(entity, gold_ents)[0])
    result = {}
    for label, c in sorted(counts.items()):
        tp, fp, fn = c["tp"], c["fp"], c["fn"]
        p = tp / (tp + fp) if tp + fp else 0.0
        r = tp / (tp + fn) if tp + fn else 0.0
        result[label] = {
            "tp": tp,
            "fp": fp,
            "fn": fn,
            "p": round(100 * p, 2),
            "r": round(100 * r, 2),
            "f": round(100 * 2 * p * r / (p + r), 2) if p + r else 0.0,
            "fn_kinds": {k: c["fn_" + k] for k in KINDS},
            "fp_kinds": {k: c["fp_" + k] for k in KINDS},
        }
    result["confusions"] = dict(confusions.most_common())
    return result


def markdown(results: Dict[str, Dict[str, Dict]]) -> str:
    models = list(results)
    labels = sorted(
        {label for r in results.values() for label in r} - {"confusions"},
        key=lambda x: (x == "all", x),
    )
    lines = [
        "| label | model | F1 | P | R | missed: type / boundary / both / nothing | wrong: type / boundary / both / nothing |",
        "|---|---|---:|---:|---:|---|---|",
    ]
    for label in labels:
        for model in models:
            row = results[model].get(label)
            if row:
                fn = " / ".join(str(row["fn_kinds"][k]) for k in KINDS)
                fp = " / ".join(str(row["fp_kinds"][k]) for k in KINDS)
                lines.append(
                    f"| {label} | {model} | {row['f']} | {row['p']} | {row['r']} | {fn} | {fp} |"
                )
    lines += [
        "",
        "Type errors, gold -> predicted: "
        + "; ".join(
            f"{model}: "
            + ", ".join(f"{pair} {n}" for pair, n in list(results[model]["confusions"].items())[:6])
            for model in models
        ),
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("test", type=Path, help="a DocBin of gold docs")
    parser.add_argument("--model", action="append", required=True, help="NAME=PIPELINE_PATH")
    parser.add_argument(
        "--output", type=Path, required=True, help="a .json file; a .md table beside it"
    )
    args = parser.parse_args()
    blank = spacy.blank("en")
    docs = list(DocBin().from_disk(args.test).get_docs(blank.vocab))
    gold = [[(e.start_char, e.end_char, e.label_) for e in doc.ents] for doc in docs]
    results = {}
    for spec in args.model:
        name, _, path = spec.partition("=")
        nlp = spacy.load(path)
        predicted = [
            [(e.start_char, e.end_char, e.label_) for e in doc.ents]
            for doc in nlp.pipe(d.text for d in docs)
        ]
        results[name] = breakdown(gold, predicted)
    record = {
        "command": " ".join(["python", "scripts/dev/error_breakdown.py"] + sys.argv[1:]),
        "date": now(),
        "machine": machine(),
        "test": str(args.test),
        "docs": len(docs),
        "models": results,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(record, indent=2) + "\n")
    table = markdown(results)
    args.output.with_suffix(".md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
