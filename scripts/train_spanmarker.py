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

Its full budget is hours of CPU, more than a session: it checkpoints every
`--save-steps` steps and the same command resumes from the last checkpoint, so
the budget can be spread over several runs (the record lists each segment).
"""

import argparse
import ctypes
import ctypes.util
import json
import shutil
import time
from pathlib import Path
from typing import Dict, List, Optional

import spacy
from spacy.tokens import DocBin

from spacy_spandec.corpus import doc_sentences
from spacy_spandec.encoders import offline_encoder
from spacy_spandec.tags import spans_to_bio

from run_info import now  # scripts/ is on sys.path

PROJECT_DIR = Path(__file__).resolve().parents[1]
SEGMENTS = "segments.json"


def load_bio(path: Path, limit: int = 0) -> List[Dict[str, List[str]]]:
    """Token lists and BIO tags of each sentence of a DocBin (its samples may
    be chunks of several sentences, which SpanMarker's 128 wordpieces would
    truncate), through the shared spans_to_bio."""
    nlp = spacy.blank("en")
    rows = []
    for doc in DocBin().from_disk(path).get_docs(nlp.vocab):
        for sent in doc_sentences(doc):
            if limit and len(rows) >= limit:
                return rows
            spans = [(e.start - sent.start, e.end - sent.start, e.label_) for e in sent.ents]
            rows.append(
                {"tokens": [t.text for t in sent], "ner_tags": spans_to_bio(len(sent), spans)}
            )
    return rows


def retain_freed_memory() -> bool:
    """Serve large buffers from the heap and keep freed heap memory (glibc mallopt).

    Why: SpanMarker pads every sample to 128 wordpieces + 256 markers, so each
    step allocates and frees large buffers; glibc maps them from the kernel and
    unmaps them on free, and the next step faults them in again. On 2026-12-02
    (AMD EPYC, 2 CPUs, 6 steps on BC5CDR) training took 154 s and the process
    spent 118 s in the kernel; with the mmap threshold, trim threshold and top
    pad raised (there through the MALLOC_* variables) 104 s and 43 s. Raising
    the trim threshold alone freezes the mmap threshold at 128 KiB and was
    slower (27 s per step against 25.7). Numerics are unchanged. No-op off glibc.
    """
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_top_pad, m_mmap_threshold = -1, -2, -3
    settings = ((m_mmap_threshold, 2**31 - 1), (m_trim_threshold, 2**31 - 1), (m_top_pad, 2**30))
    return all([bool(mallopt(option, ctypes.c_int(value))) for option, value in settings])


def last_checkpoint(folder: Path) -> Optional[Path]:
    """The highest-numbered complete `checkpoint-N` that the Trainer left in `folder`
    (it writes trainer_state.json last, so one cut off mid-save is passed over)."""
    found = (
        [
            p
            for p in folder.glob("checkpoint-*")
            if p.name.split("-")[-1].isdigit() and (p / "trainer_state.json").exists()
        ]
        if folder.is_dir()
        else []
    )
    return max(found, key=checkpoint_step, default=None)


def checkpoint_step(checkpoint: Path) -> int:
    return int(checkpoint.name.split("-")[-1])


def load_segments(checkpoints: Path, resume: Optional[Path], settings: Dict) -> List[Dict]:
    """Earlier runs' segments up to the checkpoint we resume from, plus a new open one.

    A resumed run must train what the checkpoint was training: other settings
    (say a different --max-steps, which reshapes the learning-rate schedule)
    would silently give a model of neither budget, so they are refused."""
    path = checkpoints / SEGMENTS
    done = json.loads(path.read_text()) if resume and path.exists() else []
    for seg in done:
        differ = {
            k: (seg["settings"][k], v)
            for k, v in settings.items()
            if seg.get("settings", {}).get(k, v) != v
        }
        if differ:
            changes = ", ".join(
                f"{k}: {old} in the checkpoint, {new} now" for k, (old, new) in differ.items()
            )
            raise SystemExit(
                f"{resume} was trained with other settings ({changes}). Rerun with the checkpoint's "
                f"settings to resume, or delete {checkpoints} to start again."
            )
    step = checkpoint_step(resume) if resume else 0
    done = [seg for seg in done if seg["to_step"] <= step]
    return done + [
        {
            "from_step": step,
            "to_step": step,
            "started": now(),
            "seconds": 0.0,
            "settings": settings,
            "_start": time.perf_counter(),
        }
    ]


def close_segment(segments: List[Dict], step: int) -> List[Dict]:
    """Bring the open (last) segment up to `step` and now; the segments as recorded."""
    segments[-1]["to_step"] = step
    segments[-1]["seconds"] = round(time.perf_counter() - segments[-1]["_start"], 1)
    return [{k: v for k, v in seg.items() if k != "_start"} for seg in segments]


def segment_log(checkpoints: Path, segments: List[Dict]):
    """A TrainerCallback that records, at every checkpoint, how far this run got and
    how long it took, so the wall time of a budget spread over runs adds up."""
    from transformers import TrainerCallback

    class _SegmentLog(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            rows = close_segment(segments, state.global_step)
            checkpoints.mkdir(parents=True, exist_ok=True)
            (checkpoints / SEGMENTS).write_text(json.dumps(rows, indent=1))

    return _SegmentLog()


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="conllpp")
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--max-steps", type=int, default=400)
    parser.add_argument(
        "--batch-size",
        type=int,
        default=32,
        help="sentences per step before SpanMarker splits them",
    )
    parser.add_argument("--learn-rate", type=float, default=1e-4)
    parser.add_argument(
        "--train-limit", type=int, default=0, help="first K training sentences only (0 = all)"
    )
    parser.add_argument(
        "--model-max-length",
        type=int,
        default=128,
        help="wordpieces per sample; SpanMarker pads every sample to this + 2 x 128 markers",
    )
    parser.add_argument(
        "--encoder", default=None, help="encoder directory (default: the offline MiniLM package)"
    )
    parser.add_argument(
        "--save-steps", type=int, default=25, help="checkpoint every N steps; rerun to resume"
    )
    parser.add_argument(
        "--keep-trimming", action="store_true", help="leave glibc's malloc trimming as it is"
    )
    args = parser.parse_args(argv)
    if not args.keep_trimming:
        retain_freed_memory()

    from datasets import Dataset
    from span_marker import SpanMarkerModel, Trainer
    from transformers import TrainingArguments

    corpus = PROJECT_DIR / "corpus" / args.dataset
    train_rows = load_bio(corpus / "train.spacy", args.train_limit)
    tags = sorted(
        {tag for row in train_rows for tag in row["ner_tags"]} - {"O"}, key=lambda t: (t[2:], t[0])
    )
    labels = ["O"] + tags
    ids = {tag: i for i, tag in enumerate(labels)}
    dataset = Dataset.from_list(
        [
            {"tokens": row["tokens"], "ner_tags": [ids[t] for t in row["ner_tags"]]}
            for row in train_rows
        ]
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
        save_strategy="steps",
        save_steps=args.save_steps,
        save_total_limit=1,
        report_to=[],
        use_cpu=True,
        seed=0,
        dataloader_num_workers=0,
    )
    checkpoints = args.output / "checkpoints"
    resume = last_checkpoint(checkpoints)
    settings = {
        "dataset": args.dataset,
        "max_steps": args.max_steps,
        "batch_size": args.batch_size,
        "learn_rate": args.learn_rate,
        "train_limit": args.train_limit,
        "model_max_length": args.model_max_length,
        "encoder": encoder,
    }
    segments = load_segments(checkpoints, resume, settings)
    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=dataset,
        callbacks=[segment_log(checkpoints, segments)],
    )
    trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    args.output.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(args.output / "model"))
    segments = close_segment(segments, trainer.state.global_step)
    shutil.rmtree(checkpoints, ignore_errors=True)
    record = {
        "dataset": args.dataset,
        "encoder": encoder,
        "max_steps": args.max_steps,
        "sentences_per_step": args.batch_size,
        "train_sentences": len(train_rows),
        "learn_rate": args.learn_rate,
        "model_max_length": args.model_max_length,
        "train_seconds": round(sum(seg["seconds"] for seg in segments), 1),
        "segments": segments,
        "log": [entry for entry in trainer.state.log_history if "loss" in entry],
        "finished": now(),
    }
    (args.output / "training.json").write_text(json.dumps(record, indent=1))
    print(json.dumps({k: v for k, v in record.items() if k != "log"}, indent=1))


if __name__ == "__main__":
    main()
