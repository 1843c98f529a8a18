"""How many candidate spans are O: the candidates of up to MAX tokens of
each benchmark's train set against its gold entities (why the span loss
weights O spans down; see results/README.md), and how many are O spans that
overlap or touch a gold entity (what `keep_near_negatives` always decodes).

    python scripts/dev/o_share.py --output results/ablations/o_share.json
"""

import argparse
import json
import sys
import time
from pathlib import Path

import spacy
from spacy.tokens import DocBin

import numpy

from spacy_spandec.candidates import count_candidates, enumerate_candidates, near_gold

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from run_info import machine  # noqa: E402  (scripts/)


def near_candidates(doc, max_span_length: int) -> int:
    """The candidates of `doc` that overlap or touch one of its entities (the
    entities of up to max_span_length tokens among them)."""
    cands = enumerate_candidates([len(doc)], max_span_length)
    tokens = numpy.zeros(len(doc), dtype="float32")
    for ent in doc.ents:
        tokens[ent.start : ent.end] = 1.0
    return int(near_gold(tokens, [len(doc)], cands.doc_ids, cands.starts, cands.ends).sum())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--datasets", nargs="+", default=["conllpp", "bc5cdr"])
    parser.add_argument("--max-span-length", type=int, default=8)
    parser.add_argument("--output", type=Path, required=True)
    args = parser.parse_args()
    vocab = spacy.blank("en").vocab
    rows = {}
    for dataset in args.datasets:
        docs = list(DocBin().from_disk(Path("corpus") / dataset / "train.spacy").get_docs(vocab))
        candidates = sum(count_candidates(len(doc), args.max_span_length) for doc in docs)
        entities = sum(1 for doc in docs for ent in doc.ents if len(ent) <= args.max_span_length)
        near = sum(near_candidates(doc, args.max_span_length) for doc in docs) - entities
        rows[dataset] = {
            "candidates": candidates,
            "gold_entities": entities,
            "o_share": round(1 - entities / candidates, 4),
            "near_o_share": round(near / candidates, 4),
        }
    result = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": machine(),
        "command": "python scripts/dev/o_share.py " + " ".join(sys.argv[1:]),
        "max_span_length": args.max_span_length,
        "train_sets": rows,
    }
    args.output.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
