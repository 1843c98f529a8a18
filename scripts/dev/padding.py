"""How much of a training batch's encoder input is padding, under a config's
batcher: counted, not timed, so it can run beside a training.

spacy-transformers' `update` cuts each doc into the config's strided spans,
tokenizes them and pads every span of the batch to the longest one
(`huggingface_tokenize(padding="longest")`); the encoder's cost grows with the
padded length. This counts, over one epoch of a train set as the resumable
trainer reads it (`read_train_examples`: the config's reader, which
re-tokenizes each text) and shuffles it (`epoch_batches`, epoch 0 with
--seed), the words (spaCy tokens, as the trainer's words/s), the wordpieces
and the padded wordpieces of each batch, for the config's own
`[training.batcher]` and for each --batcher given as JSON overrides of it:

    python scripts/dev/padding.py configs/spandec.cfg corpus/conllpp_mixed128/train.spacy \
        --batcher '{"@batchers": "spacy.batch_by_padded.v1", "size": 500}' \
        [--output results/profile/padding_mixed128.json]
"""

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any, Dict, List

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from run_info import report  # noqa: E402


def batch_counts(batches: List[List[Any]], get_spans, tokenizer) -> Dict[str, Any]:
    """Words, wordpieces and padded wordpieces per batch of Examples, summed
    and per step; and how varied a step is: its samples and its gold mentions
    (deciles)."""
    words, pieces, padded = 0, 0, 0
    for batch in batches:
        docs = [eg.predicted for eg in batch]
        texts = [span.text for spans in get_spans(docs) for span in spans]
        lengths = [len(ids) for ids in tokenizer(texts, add_special_tokens=True)["input_ids"]]
        words += sum(len(doc) for doc in docs)
        pieces += sum(lengths)
        padded += len(lengths) * max(lengths, default=0)
    samples = [len(batch) for batch in batches]
    mentions = [sum(len(eg.reference.ents) for eg in batch) for batch in batches]
    return {
        "steps": len(batches),
        "words": words,
        "words_per_step": round(words / len(batches), 1),
        "wordpieces": pieces,
        "padded_wordpieces": padded,
        "padded_per_word": round(padded / words, 3),
        "padding_share": round(1 - pieces / padded, 3),
        "samples_per_step_median": statistics.median(samples),
        "samples_per_step_min_max": [min(samples), max(samples)],
        "mentions_per_step_p10_p50_p90": [
            round(statistics.quantiles(mentions, n=10)[i], 1) for i in (0, 4, 8)
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config", type=Path)
    parser.add_argument("train", type=Path)
    parser.add_argument(
        "--batcher",
        action="append",
        default=[],
        help="JSON settings replacing the config's [training.batcher]; repeatable",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()

    from spacy.util import load_config, registry
    from transformers import AutoTokenizer

    import spacy_spandec  # noqa: F401  (registers the encoder's name getter)
    import spacy_transformers  # noqa: F401  (registers the span getters)
    from spacy_spandec.train import epoch_batches, read_train_examples

    config = load_config(args.config, interpolate=False)
    model = config["components"]["transformer"]["model"]
    name = registry.resolve({"name": model["name"]})["name"]
    get_spans = registry.resolve({"get_spans": model["get_spans"]})["get_spans"]
    tokenizer = AutoTokenizer.from_pretrained(str(name), **model.get("tokenizer_config", {}))
    examples = read_train_examples(args.config, args.train)
    settings = [dict(config["training"]["batcher"])]
    settings += [json.loads(text) for text in args.batcher]
    rows = []
    for setting in settings:
        batcher = registry.resolve({"batcher": setting})["batcher"]
        epoch = epoch_batches(examples, batcher, args.seed)
        rows.append({"batcher": setting, **batch_counts(epoch, get_spans, tokenizer)})
    base = rows[0]["padded_per_word"]
    for row in rows:
        row["padded_per_word_vs_config"] = round(row["padded_per_word"] / base, 3)
    report(
        {
            "train": str(args.train),
            "docs": len(examples),
            "mean_words_per_doc": round(statistics.mean(len(eg) for eg in examples), 1),
            "rows": rows,
        },
        args.output,
    )


if __name__ == "__main__":
    main()
