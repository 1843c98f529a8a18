"""Annotate a corpus with a trained pipeline, in resumable shards.

    python -m spacy_spandec annotate PIPELINE INPUT OUTPUT [--format jsonl|parquet]

INPUT is a file, a directory or a glob of JSONL (`.jsonl`, `.ndjson`: one JSON
object a line with a text field), plain text (`.txt`: one doc a line),
Parquet (`.parquet`) or spaCy DocBin (`.spacy`) files. OUTPUT is a folder:

- `annotations-NNNNN.jsonl|parquet`: one record per good input record, in
  input order: its fields, then `ents` (start_char, end_char, label, score)
  and `spans` (every span of the component's `doc.spans` group, with score);
- `errors-NNNNN.jsonl`: the records that could not be annotated (invalid
  JSON, a missing or non-string text field, undecodable bytes, an empty
  line, a text over nlp.max_length), with source file, line and reason;
- `docs-NNNNN.spacy` with `--docbin`; `manifest.json`; `summary.json`.

Shard N holds input records N * shard_size ... (N + 1) * shard_size - 1. A
shard's annotation file is written last and atomically, so re-running the
same command skips finished shards and a killed run loses at most the shard
in progress. Within a shard, texts are annotated shortest first (less
padding) and written back in input order.
"""

import glob
import io
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Optional, Tuple

import spacy
from spacy.language import Language
from spacy.tokens import Doc, DocBin
from spacy.util import load_config

from .pipeline_component import SpanDecNER, spandec_components

FORMATS = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".txt": "text",
    ".parquet": "parquet",
    ".spacy": "docbin",
}
OUTPUT_FORMATS = ("jsonl", "parquet")
MANIFEST_KEYS = ("inputs", "pipeline", "text_field", "shard_size", "format")


@dataclass
class Record:
    """One input record: its text and fields, or why it cannot be annotated."""

    source: str
    line: int
    text: Optional[str] = None
    fields: Dict[str, Any] = field(default_factory=dict)
    doc: Optional[Doc] = None
    error: Optional[str] = None


def input_files(spec: str) -> List[Path]:
    """A file, a directory (its files of known formats) or a glob, sorted."""
    path = Path(spec)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in FORMATS)
    elif path.exists():
        files = [path]
    else:
        files = sorted(Path(p) for p in glob.glob(spec, recursive=True) if Path(p).is_file())
    if not files:
        raise ValueError(
            f"No input files at {spec!r}: give a file, a folder or a glob of {sorted(FORMATS)} files."
        )
    unknown = [str(p) for p in files if p.suffix not in FORMATS]
    if unknown:
        raise ValueError(f"Unknown input format of {unknown[:3]}: use one of {sorted(FORMATS)}.")
    return files


def _text_record(source: str, line: int, raw: bytes, kind: str, text_field: str) -> Record:
    try:
        value = raw.decode("utf8")
    except UnicodeDecodeError as err:
        return Record(source, line, error=f"undecodable bytes at offset {err.start}: {err.reason}")
    if not value.strip():
        return Record(source, line, error="empty line")
    if kind == "text":
        return Record(source, line, text=value, fields={text_field: value})
    try:
        obj = json.loads(value)
    except json.JSONDecodeError as err:
        return Record(source, line, error=f"invalid JSON: {err.msg} (column {err.colno})")
    return _object_record(source, line, obj, text_field)


def _object_record(source: str, line: int, obj: Any, text_field: str) -> Record:
    if not isinstance(obj, dict):
        return Record(source, line, error=f"expected a JSON object, got {type(obj).__name__}")
    if text_field not in obj:
        return Record(
            source,
            line,
            error=f"no {text_field!r} field (fields: {sorted(obj)[:8]}); set --text-field",
        )
    text = obj[text_field]
    if not isinstance(text, str):
        return Record(
            source, line, error=f"field {text_field!r} is {type(text).__name__}, not a string"
        )
    return Record(source, line, text=text, fields=obj)


def read_records(
    path: Path, text_field: str, vocab, data: Optional[bytes] = None
) -> Iterator[Record]:
    """The records of one input file (or of its bytes, `data`); line numbers
    start at 1 (Parquet: row, DocBin: doc)."""
    kind = FORMATS[path.suffix]
    if kind in ("jsonl", "text"):
        with io.BytesIO(data) if data is not None else path.open("rb") as fh:
            for line, raw in enumerate(fh, 1):
                yield _text_record(str(path), line, raw.rstrip(b"\r\n"), kind, text_field)
    elif kind == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        line = 0
        source = pa.BufferReader(data) if data is not None else path
        for batch in pq.ParquetFile(source).iter_batches(batch_size=1024):
            for row in batch.to_pylist():
                line += 1
                yield _object_record(str(path), line, row, text_field)
    else:
        docbin = DocBin().from_bytes(data) if data is not None else DocBin().from_disk(path)
        for line, doc in enumerate(docbin.get_docs(vocab), 1):
            yield Record(str(path), line, text=doc.text, fields={text_field: doc.text}, doc=doc)


def count_records(path: Path) -> int:
    """The number of records of one input file, cheaply (progress bar's ETA,
    record numbers of the Ray engine)."""
    kind = FORMATS[path.suffix]
    if kind in ("jsonl", "text"):
        with path.open("rb") as fh:
            return sum(1 for _ in fh)
    if kind == "parquet":
        import pyarrow.parquet as pq

        return pq.ParquetFile(path).metadata.num_rows
    return len(DocBin().from_disk(path))


def spans_of(doc: Doc, component: Optional[SpanDecNER]) -> Tuple[List[dict], List[dict]]:
    """`ents` and `spans` of a doc as plain records with scores."""
    spans: List[dict] = []
    score_of: Dict[Tuple[int, int, str], float] = {}
    if component is not None and component.spans_key in doc.spans:
        group = doc.spans[component.spans_key]
        scores = group.attrs.get("scores", [None] * len(group))
        for span, score in zip(group, scores):
            value = None if score is None else float(score)
            score_of[(span.start_char, span.end_char, span.label_)] = value
            spans.append(
                {
                    "start_char": span.start_char,
                    "end_char": span.end_char,
                    "label": span.label_,
                    "score": value,
                }
            )
    ents = [
        {
            "start_char": e.start_char,
            "end_char": e.end_char,
            "label": e.label_,
            "score": score_of.get((e.start_char, e.end_char, e.label_)),
        }
        for e in doc.ents
    ]
    return ents, spans


def load_pipeline(
    path: str, sf_threshold: Optional[float], inference_dtype: Optional[str], gpu_id: int
) -> Language:
    """spacy.load with the serving overrides applied to every spandec_ner
    component (as config, so n_process workers get them too)."""
    if gpu_id >= 0:
        spacy.require_gpu(gpu_id)
    overrides: Dict[str, Any] = {}
    if sf_threshold is not None:
        overrides["sf_threshold"] = sf_threshold
    if inference_dtype is not None:
        overrides["inference_dtype"] = inference_dtype
    config: Dict[str, Any] = {}
    if overrides:
        config_path = Path(path) / "config.cfg"
        names = []
        if config_path.exists():
            components = load_config(config_path, interpolate=False).get("components", {})
            names = [
                name for name, comp in components.items() if comp.get("factory") == "spandec_ner"
            ]
        if not names:
            raise ValueError(
                f"--sf-threshold / --inference-dtype need a spandec_ner component; {path} has none."
            )
        config = {"components": {name: dict(overrides) for name in names}}
    return spacy.load(path, config=config)


@dataclass
class Result:
    """What became of one input record: an output row, or an error."""

    source: str
    line: int
    row: Optional[Dict[str, Any]] = None
    error: Optional[str] = None
    doc: Optional[Doc] = None
    words: int = 0


class Annotator:
    """Annotates lists of records with one loaded pipeline."""

    def __init__(self, nlp: Language, batch_size: int, n_process: int = 1) -> None:
        self.nlp = nlp
        self.batch_size = batch_size
        self.n_process = n_process
        self.component = next((pipe for _, pipe in spandec_components(nlp)), None)

    def docs(self, records: List[Record]) -> Tuple[Dict[int, Doc], Dict[int, str]]:
        """Docs of the good records by position; reasons for the ones that fail."""
        failed: Dict[int, str] = {}
        todo = []
        for i, rec in enumerate(records):
            if rec.error is not None:
                continue
            if len(rec.text) > self.nlp.max_length:
                failed[i] = (
                    f"text of {len(rec.text)} characters is over nlp.max_length ({self.nlp.max_length}); split it"
                )
            else:
                todo.append(i)
        todo.sort(key=lambda i: len(records[i].text))  # similar lengths batch together
        inputs = [records[i].doc if records[i].doc is not None else records[i].text for i in todo]
        try:
            docs = list(self.nlp.pipe(inputs, batch_size=self.batch_size, n_process=self.n_process))
            return dict(zip(todo, docs)), failed
        except Exception:  # find the record(s) that fail; the others go on
            pass
        out: Dict[int, Doc] = {}
        for i, value in zip(todo, inputs):
            try:
                out[i] = self.nlp(value)
            except Exception as err:  # noqa: BLE001  (reported per record)
                failed[i] = f"annotation failed: {type(err).__name__}: {err}"
        return out, failed

    def results(self, records: List[Record]) -> List[Result]:
        """One Result per record, in the records' order."""
        docs, failed = self.docs(records)
        out = []
        for i, rec in enumerate(records):
            reason = rec.error or failed.get(i)
            if reason is not None:
                out.append(Result(rec.source, rec.line, error=reason))
                continue
            ents, spans = spans_of(docs[i], self.component)
            out.append(
                Result(
                    rec.source,
                    rec.line,
                    row={**rec.fields, "ents": ents, "spans": spans},
                    doc=docs[i],
                    words=len(docs[i]),
                )
            )
        return out


def _json_default(value: Any) -> Any:
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


class ShardWriter:
    """Writes the results of one shard: errors and docs first, the
    annotation file (the shard's completion mark) last; keeps the summary."""

    def __init__(self, out: Path, fmt: str, docbin: bool) -> None:
        self.out = out
        self.fmt = fmt
        self.docbin = docbin
        self.summary = {
            "records": 0,
            "annotated": 0,
            "failed": 0,
            "skipped_shards": 0,
            "words": 0,
            "entities": 0,
        }

    def path(self, shard: int) -> Path:
        return self.out / f"annotations-{shard:05d}.{self.fmt}"

    def skip(self, shard: int, n_records: int) -> None:
        """Count a shard that an earlier run finished."""
        n_errors = len((self.out / f"errors-{shard:05d}.jsonl").read_text().splitlines())
        self.summary["records"] += n_records
        self.summary["skipped_shards"] += 1
        self.summary["failed"] += n_errors
        self.summary["annotated"] += n_records - n_errors

    def write(self, shard: int, results: List[Result]) -> None:
        rows = [r.row for r in results if r.row is not None]
        errors = [
            {"source": r.source, "line": r.line, "error": r.error} for r in results if r.row is None
        ]
        write_atomic(
            self.out / f"errors-{shard:05d}.jsonl",
            "".join(json.dumps(e) + "\n" for e in errors).encode("utf8"),
        )
        if self.docbin:
            docs = [r.doc for r in results if r.row is not None]
            write_atomic(
                self.out / f"docs-{shard:05d}.spacy",
                DocBin(docs=docs, store_user_data=True).to_bytes(),
            )
        if self.fmt == "jsonl":
            data = "".join(
                json.dumps(r, ensure_ascii=False, default=_json_default) + "\n" for r in rows
            )
            write_atomic(self.path(shard), data.encode("utf8"))
        else:
            self._write_parquet(shard, rows)
        self.summary["records"] += len(results)
        self.summary["annotated"] += len(rows)
        self.summary["failed"] += len(errors)
        self.summary["words"] += sum(r.words for r in results)
        self.summary["entities"] += sum(len(r["ents"]) for r in rows)

    def _write_parquet(self, shard: int, rows: List[Dict[str, Any]]) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        span = pa.list_(
            pa.struct(
                [
                    ("start_char", pa.int64()),
                    ("end_char", pa.int64()),
                    ("label", pa.string()),
                    ("score", pa.float64()),
                ]
            )
        )
        names = list(
            dict.fromkeys(key for row in rows for key in row)
        )  # every field, in order of appearance
        columns = {}
        for name in names:
            values = [row.get(name) for row in rows]
            try:
                columns[name] = pa.array(values, span if name in ("ents", "spans") else None)
            except (pa.ArrowInvalid, pa.ArrowTypeError) as err:
                raise ValueError(
                    f"Field {name!r} has values of different types across the records of shard {shard} ({err}); "
                    "Parquet needs one type per column: use --format jsonl."
                ) from None
        tmp = self.path(shard).with_name(self.path(shard).name + ".tmp")
        pq.write_table(pa.table(columns), tmp)
        os.replace(tmp, self.path(shard))


def shards(records: Iterable[Record], size: int) -> Iterator[Tuple[int, List[Record]]]:
    batch: List[Record] = []
    index = 0
    for rec in records:
        batch.append(rec)
        if len(batch) == size:
            yield index, batch
            index, batch = index + 1, []
    if batch:
        yield index, batch


def check_manifest(out: Path, manifest: Dict[str, Any]) -> None:
    """A folder holds one run: refuse to mix shards of different settings."""
    path = out / "manifest.json"
    if path.exists():
        old = json.loads(path.read_text())
        changed = [k for k in MANIFEST_KEYS if old.get(k) != manifest.get(k)]
        if changed:
            raise ValueError(
                f"{out} holds shards of a run with other {', '.join(changed)}. "
                "Use a new output folder, or delete this one to start again."
            )
    else:
        out.mkdir(parents=True, exist_ok=True)
        write_atomic(path, json.dumps(manifest, indent=1).encode("utf8"))


def annotate(
    pipeline: str,
    input_spec: str,
    output: Path,
    *,
    text_field: str = "text",
    fmt: str = "jsonl",
    shard_size: int = 10000,
    batch_size: int = 64,
    n_process: int = 1,
    gpu_id: int = -1,
    sf_threshold: Optional[float] = None,
    inference_dtype: Optional[str] = None,
    docbin: bool = False,
    progress: bool = True,
    engine: str = "local",
    workers: int = 1,
    address: Optional[str] = None,
    num_gpus: float = 0.0,
    cpus_per_worker: Optional[float] = None,
) -> Dict[str, Any]:
    """Annotate every record of INPUT into shards under OUTPUT; returns the summary.

    engine: "local" (this process, or n_process forked workers) or "ray" (a
        Ray Data pipeline with `workers` actors; spacy_spandec/annotate_ray.py).
    cpus_per_worker: Ray CPUs per actor, also its torch threads (None: an
        equal share of the cluster's CPUs).
    """
    if fmt not in OUTPUT_FORMATS:
        raise ValueError(f"Unknown output format {fmt!r}: use one of {OUTPUT_FORMATS}.")
    if engine not in ("local", "ray"):
        raise ValueError(f"Unknown engine {engine!r}: use local or ray.")
    if min(shard_size, batch_size, n_process, workers) < 1:
        raise ValueError(
            "--shard-size, --batch-size, --n-process and --workers must be at least 1."
        )
    if cpus_per_worker is not None and not cpus_per_worker > 0:
        raise ValueError(f"--cpus-per-worker must be > 0, got {cpus_per_worker}.")
    if engine == "ray" and docbin:
        raise ValueError("--docbin needs the local engine: Docs do not travel through Ray Data.")
    files = input_files(input_spec)
    if fmt == "parquet" or any(FORMATS[p.suffix] == "parquet" for p in files):
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise ValueError(
                'Parquet needs pyarrow: pip install "spacy-spandec[parquet]"'
            ) from None
    check_manifest(
        output,
        {
            "inputs": [str(p.resolve()) for p in files],
            "pipeline": str(Path(pipeline).resolve()) if Path(pipeline).exists() else pipeline,
            "text_field": text_field,
            "shard_size": shard_size,
            "format": fmt,
        },
    )
    writer = ShardWriter(output, fmt, docbin)
    started = time.perf_counter()
    from tqdm import tqdm

    counts = [count_records(path) for path in files]
    bar = tqdm(
        total=sum(counts), unit="doc", disable=not progress, file=sys.stderr, dynamic_ncols=True
    )
    if engine == "ray":
        from .annotate_ray import annotate_with_ray

        settings = {
            "pipeline": pipeline,
            "sf_threshold": sf_threshold,
            "inference_dtype": inference_dtype,
            "gpu_id": gpu_id,
            "batch_size": batch_size,
        }
        annotate_with_ray(
            files,
            counts,
            text_field,
            shard_size,
            writer,
            bar,
            settings,
            workers=workers,
            address=address,
            num_gpus=num_gpus,
            cpus_per_worker=cpus_per_worker,
        )
    else:
        nlp = load_pipeline(pipeline, sf_threshold, inference_dtype, gpu_id)
        annotator = Annotator(nlp, batch_size, n_process)
        records = (rec for path in files for rec in read_records(path, text_field, nlp.vocab))
        for shard, batch in shards(records, shard_size):
            if writer.path(shard).exists():
                writer.skip(shard, len(batch))
            else:
                writer.write(shard, annotator.results(batch))
            bar.update(len(batch))
    bar.close()
    summary = writer.summary
    summary["seconds"] = round(time.perf_counter() - started, 2)
    summary["docs_per_second"] = round(summary["annotated"] / max(summary["seconds"], 1e-9), 1)
    write_atomic(output / "summary.json", json.dumps(summary, indent=1).encode("utf8"))
    return summary
