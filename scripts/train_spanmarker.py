"""Train the PL-Marker baseline with the `span-marker` package on a project corpus.

Why: the paper compares SpanDec with PL-Marker; SpanMarker is its maintained
implementation. It is built from the same local encoder directory as our
pipelines (the offline MiniLM package), trained on the same DocBin corpus with
the same optimizer recipe where SpanMarker allows it (AdamW, weight decay 0.01,
3% warm-up then linear decay, clip 1.0, entity_max_length 8) and the same
number of sentences per step.

    python scripts/train_spanmarker.py --dataset conllpp --max-steps 400 \
        --output training/conllpp/spanmarker

Needs `pip install -e ".[benchmark,baselines]"` (span-marker and its datasets, accelerate).
Writes the model and `training.json` (steps, sentences seen, wall time).
"""
import argparse
import json
import time
from pathlib import Path
from typing import Dict, List, Optional

import spacy
from spacy.tokens import DocBin

from spacy_spandec.encoders import offline_encoder
from spacy_spandec.tags import spans_to_bio

PROJECT_DIR = Path(__file__).resolve().parents[1]


def load_bio(path: Path, limit: int = 0) -> List[Dict[str, List[str]]]:
    """Token lists and BIO tags of a DocBin, through the shared spans_to_bio."""
    nlp = spacy.blank("en")
    rows = []
    for i, doc in enumerate(DocBin().from_disk(path).get_docs(nlp.vocab)):
        if limit and i >= limit:
            break
        spans = [(ent.start, ent.end, ent.label_) for ent in doc.ents]
        rows.append({"tokens": [t.text for t in doc], "ner_tags": spans_to_bio(len(doc), spans)})
    return rows


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="conllpp")
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--max-steps", type=int, default=400)
    parser.add_argument("--batch-size", type=int, default=32, help="sentences per step before SpanMarker splits them")
    parser.add_argument("--learn-rate", type=float, default=1e-4)
    parser.add_argument("--train-limit", type=int, default=0, help="first K training sentences only (0 = all)")
    parser.add_argument(
        "--model-max-length",
        type=int,
        default=128,
        help="wordpieces per sample; SpanMarker pads every sample to this + 2 x 128 markers",
    )
    parser.add_argument("--encoder", default=None, help="encoder directory (default: the offline MiniLM package)")
    args = parser.parse_args(argv)

    from datasets import Dataset
    from span_marker import SpanMarkerModel, Trainer
    from transformers import TrainingArguments

    corpus = PROJECT_DIR / "corpus" / args.dataset
    train_rows = load_bio(corpus / "train.spacy", args.train_limit)
    tags = sorted({tag for row in train_rows for tag in row["ner_tags"]} - {"O"}, key=lambda t: (t[2:], t[0]))
    labels = ["O"] + tags
    ids = {tag: i for i, tag in enumerate(labels)}
    dataset = Dataset.from_list(
        [{"tokens": row["tokens"], "ner_tags": [ids[t] for t in row["ner_tags"]]} for row in train_rows]
    )
    encoder = args.encoder or offline_encoder()
    model = SpanMarkerModel.from_pretrained(
        encoder,
        labels=labels,
        model_max_length=args.model_max_length,
        marker_max_length=128,
        entity_max_length=8,
    )
    training_args = TrainingArguments(
        output_dir=str(args.output / "checkpoints"),
        per_device_train_batch_size=args.batch_size,
        learning_rate=args.learn_rate,
        weight_decay=0.01,
        warmup_ratio=0.03,
        lr_scheduler_type="linear",
        max_grad_norm=1.0,
        max_steps=args.max_steps,
        logging_steps=max(1, args.max_steps // 20),
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        seed=0,
        dataloader_num_workers=0,
    )
    trainer = Trainer(model=model, args=training_args, train_dataset=dataset)
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    args.output.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(args.output / "model"))
    record = {
        "dataset": args.dataset,
        "encoder": encoder,
        "max_steps": args.max_steps,
        "sentences_per_step": args.batch_size,
        "train_sentences": len(train_rows),
        "learn_rate": args.learn_rate,
        "model_max_length": args.model_max_length,
        "train_seconds": round(seconds, 1),
        "log": [entry for entry in trainer.state.log_history if "loss" in entry],
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    (args.output / "training.json").write_text(json.dumps(record, indent=1))
    print(json.dumps({k: v for k, v in record.items() if k != "log"}, indent=1))


if __name__ == "__main__":
    main()
