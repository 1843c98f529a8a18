"""`python -m spacy_spandec COMMAND` (also the `spacy-spandec` console script).

Commands: annotate (a corpus, in resumable shards), render (HTML of the
predicted spans with their scores), train (resumable training), calibrate
(tune sf_threshold / outside_bias on dev), convert and stats (a benchmark's
raw files to DocBin, and their statistics), convert-custom (your own
JSONL/IOB/DocBin annotations to DocBin, with a report of bad annotations).
"""

import argparse
import sys
from pathlib import Path
from typing import List, Optional

from wasabi import msg

COMMANDS = ("annotate", "render", "train", "calibrate", "convert", "stats", "convert-custom")


def annotate_main(argv: List[str]) -> int:
    from . import annotate as module

    parser = argparse.ArgumentParser(
        prog="python -m spacy_spandec annotate",
        description=module.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("pipeline", help="a pipeline folder or installed package name")
    parser.add_argument(
        "input", help=f"a file, folder or glob of {', '.join(sorted(module.FORMATS))} files"
    )
    parser.add_argument("output", type=Path, help="output folder (shards, errors, summary)")
    parser.add_argument("--format", dest="fmt", choices=["jsonl", "parquet"], default="jsonl")
    parser.add_argument("--text-field", default="text", help="field with the text (JSONL, Parquet)")
    parser.add_argument("--shard-size", type=int, default=10000, help="records per output shard")
    parser.add_argument("--batch-size", type=int, default=64, help="docs per nlp.pipe batch")
    parser.add_argument(
        "--n-process", type=int, default=1, help="worker processes (nlp.pipe n_process)"
    )
    parser.add_argument("--gpu-id", type=int, default=-1)
    parser.add_argument(
        "--sf-threshold", type=float, default=None, help="override the pipeline's sf_threshold"
    )
    parser.add_argument("--inference-dtype", choices=["float32", "int8", "bfloat16"], default=None)
    parser.add_argument(
        "--docbin", action="store_true", help="also write docs-NNNNN.spacy shards (local engine)"
    )
    parser.add_argument(
        "--engine",
        choices=["local", "ray"],
        default="local",
        help='ray: a Ray Data pipeline (pip install "spacy-spandec[ray]")',
    )
    parser.add_argument(
        "--workers", type=int, default=1, help="Ray actors, each with the pipeline loaded once"
    )
    parser.add_argument(
        "--address", default=None, help="Ray cluster to join; default: start one on this machine"
    )
    parser.add_argument(
        "--cpus-per-worker",
        type=float,
        default=None,
        help="CPUs per Ray actor, also its torch threads; default: an equal share of the cluster's",
    )
    parser.add_argument("--num-gpus", type=float, default=0.0, help="GPUs per Ray actor")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    try:
        summary = module.annotate(
            args.pipeline,
            args.input,
            args.output,
            text_field=args.text_field,
            fmt=args.fmt,
            shard_size=args.shard_size,
            batch_size=args.batch_size,
            n_process=args.n_process,
            gpu_id=args.gpu_id,
            sf_threshold=args.sf_threshold,
            inference_dtype=args.inference_dtype,
            docbin=args.docbin,
            progress=not args.no_progress,
            engine=args.engine,
            workers=args.workers,
            address=args.address,
            num_gpus=args.num_gpus,
            cpus_per_worker=args.cpus_per_worker,
        )
    except ValueError as err:
        msg.fail(str(err))
        return 1
    msg.good(
        f"{summary['records']} records = {summary['annotated']} annotated + {summary['failed']} failed "
        f"(see {args.output}/errors-*.jsonl); {summary['skipped_shards']} shard(s) done before. "
        f"This run: {summary['words']} words, {summary['entities']} entities in {summary['seconds']} s "
        f"({summary['docs_per_second']} docs/s)"
    )
    return 0


def render_main(argv: List[str]) -> int:
    from itertools import islice

    from .annotate import input_files, load_pipeline, read_records
    from .render import render

    parser = argparse.ArgumentParser(
        prog="python -m spacy_spandec render",
        description="Write an HTML page (displaCy's span style) of the spans a pipeline "
        "predicts for the first texts of INPUT, with the label and score on each span.",
    )
    parser.add_argument("pipeline", help="a pipeline folder or installed package name")
    parser.add_argument(
        "input", help="a file, folder or glob of JSONL, text, Parquet or DocBin files (as annotate)"
    )
    parser.add_argument("output", type=Path, help="the HTML file to write")
    parser.add_argument("--limit", type=int, default=20, help="texts to render")
    parser.add_argument("--text-field", default="text")
    parser.add_argument(
        "--show-pruned",
        action="store_true",
        help="also draw, in grey, the spans the span filter pruned that SpanDec would have predicted",
    )
    parser.add_argument(
        "--sf-threshold", type=float, default=None, help="override the pipeline's sf_threshold"
    )
    args = parser.parse_args(argv)
    try:
        nlp = load_pipeline(args.pipeline, args.sf_threshold, None, -1)
        records = (
            r
            for path in input_files(args.input)
            for r in read_records(path, args.text_field, nlp.vocab)
        )
        texts = [
            r.text for r in islice((r for r in records if r.error is None and r.text), args.limit)
        ]
        html = render(
            list(nlp.pipe(texts)), nlp=nlp, show_pruned=args.show_pruned, page=True, jupyter=False
        )
    except ValueError as err:
        msg.fail(str(err))
        return 1
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(html, encoding="utf8")
    msg.good(f"{len(texts)} texts rendered to {args.output}")
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in COMMANDS:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    command, rest = argv[0], argv[1:]
    if command == "annotate":
        return annotate_main(rest)
    if command == "render":
        return render_main(rest)
    if command == "train":
        from .train import main as train_main

        train_main(rest)
        return 0
    if command in ("convert", "stats"):
        from .corpus import main as corpus_main

        return corpus_main([command, *rest])
    if command == "convert-custom":
        from .custom_data import main as custom_data_main

        return custom_data_main(rest)
    from .calibrate import main as calibrate_main

    return calibrate_main(rest) or 0


if __name__ == "__main__":
    sys.exit(main())
