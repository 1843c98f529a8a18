"""The Ray Data engine of `annotate` (`--engine ray`, `pip install "spacy-spandec[ray]"`).

Input files are read by Ray (`read_binary_files`, one task a file) and parsed
by the same record reader as the local engine, so bad records get the same
errors with file and line. `map_batches` runs a pool of `--workers` actors;
each loads the pipeline once, runs torch on its share of CPUs and returns
plain columns (JSON strings, never Docs). The driver takes the results in
input order and writes the same shards, errors files and summary as the local
engine, so the two give identical output and a rerun skips finished shards.
"""

import json
import math
import os
import warnings
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Set, Tuple

from .annotate import (
    Annotator,
    Record,
    Result,
    ShardWriter,
    _json_default,
    load_pipeline,
    read_records,
)

READER_CPUS = 0.25


def parse_file(
    item: Dict[str, Any],
    text_field: str,
    files: Dict[str, Tuple[str, int]],
    shard_size: int,
    done: Set[int],
) -> Iterator[Dict[str, Any]]:
    """File bytes -> one row per record, numbered across all input files,
    without the records of finished shards. `files` maps a resolved path to
    (the path as given, its first record's number)."""
    from spacy.vocab import Vocab

    source, offset = files[str(Path(item["path"]).resolve())]
    for rec in read_records(Path(source), text_field, Vocab(), data=item["bytes"]):
        if (offset + rec.line - 1) // shard_size in done:
            continue
        yield {
            "index": offset + rec.line - 1,
            "source": rec.source,
            "line": rec.line,
            "text": rec.text,
            "error": rec.error,
            "fields": None
            if rec.error
            else json.dumps(rec.fields, ensure_ascii=False, default=_json_default),
            "words": [t.text for t in rec.doc] if rec.doc is not None else None,
            "spaces": [bool(t.whitespace_) for t in rec.doc] if rec.doc is not None else None,
        }


class PipelineActor:
    """One Ray actor: the pipeline loaded once, torch on this actor's CPUs."""

    def __init__(self, settings: Dict[str, Any], threads: int) -> None:
        import torch

        torch.set_num_threads(max(1, threads))
        self.nlp = load_pipeline(
            settings["pipeline"],
            settings["sf_threshold"],
            settings["inference_dtype"],
            settings["gpu_id"],
        )
        self.annotator = Annotator(self.nlp, settings["batch_size"])

    def __call__(self, batch: Any) -> Any:
        import pyarrow as pa
        from spacy.tokens import Doc

        records = []
        for item in batch.to_pylist():
            doc = None
            if item["words"]:
                doc = Doc(self.nlp.vocab, words=item["words"], spaces=item["spaces"])
            fields = json.loads(item["fields"]) if item["fields"] is not None else {}
            records.append(
                Record(
                    item["source"],
                    item["line"],
                    text=item["text"],
                    fields=fields,
                    doc=doc,
                    error=item["error"],
                )
            )
        results = self.annotator.results(records)
        rows = [
            None if r.row is None else json.dumps(r.row, ensure_ascii=False, default=_json_default)
            for r in results
        ]
        return pa.table(
            {
                "index": pa.array(batch.column("index").to_pylist(), pa.int64()),
                "source": pa.array([r.source for r in results], pa.string()),
                "line": pa.array([r.line for r in results], pa.int64()),
                "row": pa.array(rows, pa.string()),
                "error": pa.array([r.error for r in results], pa.string()),
                "words": pa.array([r.words for r in results], pa.int64()),
            }
        )


def annotate_with_ray(
    files: List[Path],
    counts: List[int],
    text_field: str,
    shard_size: int,
    writer: ShardWriter,
    bar: Any,
    settings: Dict[str, Any],
    *,
    workers: int,
    address: Optional[str],
    num_gpus: float,
    cpus_per_worker: Optional[float] = None,
) -> None:
    try:
        import ray
        import ray.data
    except ImportError:
        raise ValueError('--engine ray needs Ray Data: pip install "spacy-spandec[ray]"') from None
    started_here = not ray.is_initialized()
    if started_here:
        # No --address: a local Ray instance on this machine.
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # offline machines: no usage report
        ray.init(
            address=address, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True
        )
    try:
        ctx = ray.data.DataContext.get_current()
        ctx.execution_options.preserve_order = True
        ctx.enable_progress_bars = False
        # Blocks of a few hundred records: one input file is otherwise one block,
        # and one block goes to one actor, so a second worker would sit idle.
        ctx.target_max_block_size = 256 * 1024
        numbered, total = {}, 0
        for path, count in zip(files, counts):
            numbered[str(path.resolve())] = (str(path), total)
            total += count
        n_shards = math.ceil(total / shard_size)
        done = {shard for shard in range(n_shards) if writer.path(shard).exists()}
        for shard in sorted(done):
            writer.skip(shard, min(shard_size, total - shard * shard_size))
            bar.update(min(shard_size, total - shard * shard_size))
        if len(done) == n_shards:
            return
        # Reading and parsing get a quarter CPU each, the actors share the rest:
        # a task that asks for more than the actors leave free is never scheduled.
        per_worker = cpus_per_worker
        if per_worker is None:
            cpus = float(ray.available_resources().get("CPU", os.cpu_count() or 1))
            per_worker = max(0.5, (cpus - 2 * READER_CPUS) / workers)
        needed = per_worker * workers + 2 * READER_CPUS
        have = float(ray.cluster_resources().get("CPU", 0))
        if needed > have:
            problem = (
                f"{workers} Ray workers with {per_worker:g} CPUs each, plus {2 * READER_CPUS:g} for "
                f"reading, need {needed:g} CPUs; the cluster has {have:g}."
            )
            if started_here:
                raise ValueError(
                    f"{problem} Lower --workers or --cpus-per-worker, or join a bigger cluster "
                    "with --address."
                )
            warnings.warn(f"{problem} The actors wait until the cluster grows.", stacklevel=2)
        ds = ray.data.read_binary_files(
            [str(p.resolve()) for p in files], include_paths=True, num_cpus=READER_CPUS
        )
        kwargs = {
            "text_field": text_field,
            "files": numbered,
            "shard_size": shard_size,
            "done": done,
        }
        ds = ds.flat_map(parse_file, fn_kwargs=kwargs, num_cpus=READER_CPUS)
        ds = ds.map_batches(
            PipelineActor,
            fn_constructor_args=(settings, max(1, round(per_worker))),
            batch_size=max(settings["batch_size"], 64),
            batch_format="pyarrow",
            compute=ray.data.ActorPoolStrategy(size=workers),
            num_cpus=per_worker,
            num_gpus=num_gpus or None,
        )
        pending: List[Result] = []
        shard = None
        for batch in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
            for item in batch.to_pylist():
                index = item["index"]
                if shard is not None and index // shard_size != shard:
                    writer.write(shard, pending)
                    bar.update(len(pending))
                    pending = []
                shard = index // shard_size
                data = json.loads(item["row"]) if item["row"] is not None else None
                pending.append(
                    Result(
                        item["source"],
                        item["line"],
                        row=data,
                        error=item["error"],
                        words=item["words"],
                    )
                )
        if pending:
            writer.write(shard, pending)
            bar.update(len(pending))
    finally:
        if started_here:
            ray.shutdown()
