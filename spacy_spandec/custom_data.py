"""Your own NER annotations -> spaCy DocBin corpora, with a report of every
bad annotation.

The benchmarks' raw files are known and clean (corpus.py); a user's files are
neither. This converter checks every annotation, says what it dropped,
snapped or kept and where (file and line, or DocBin doc index), counts docs,
spans per label and spans lost per reason, and goes on. It stops with an
error only when the data cannot be used: a file that cannot be read, a split
with no usable doc, a training set without a single entity span.

Formats, from the file name (`.jsonl`/`.json`/`.ndjson`, `.spacy`,
`.conll`/`.iob`/`.bio`/`.tsv`/`.txt`, optionally `.gz`), else from the first
bytes; `--format` overrides:

* jsonl: Prodigy-style, one record a line, `{"text": ..., "spans": [{"start":
  int, "end": int, "label": str}, ...]}` with character offsets. Prodigy
  `"tokens"` (each with `"text"`) are used when they reproduce the text,
  otherwise spaCy's tokenizer for `--lang`; records with `"answer": "reject"`
  or `"ignore"` are skipped. One doc per record.
* iob: CoNLL/IOB/BIO, `TOKEN ... TAG` a line, a blank line after each
  sentence, `-DOCSTART-` lines allowed (corpus.read_conll). One doc per
  sentence.
* spacy: a DocBin; `doc.ents`, or `doc.spans[KEY]` with `--spans-key`.

Checks (`doc.ents` must be flat, on token boundaries, with labels):

* offsets outside the text, non-integer offsets, empty labels, bad IOB tags:
  reported and dropped (a bad tag is read as O);
* whitespace at a span's edges: trimmed and reported (SpanDec, like
  spaCy's `ner`, never proposes a span that starts or ends with whitespace,
  and the entity is the same without it);
* spans not on token boundaries: `--alignment-mode strict` (default) reports
  and drops them, naming what `expand` and `contract` would give; `expand` or
  `contract` snaps them with spaCy's `doc.char_span(..., alignment_mode=...)`
  and reports the snap;
* duplicate and overlapping spans: OVERLAP_RULE, spaCy's `filter_spans`;
* spans longer than `--max-span-length` tokens (8, the SpanDecoder default):
  kept, because they are true annotations, but reported, because SpanDec
  never proposes them as candidates.

    python -m spacy_spandec convert-custom TRAIN DEV [TEST] OUTPUT_DIR \\
        [--format auto|jsonl|iob|spacy] [--alignment-mode strict|expand|contract] \\
        [--spans-key KEY] [--max-span-length 8] [--lang en]

writes OUTPUT_DIR/{train,dev,test}.spacy, stats.json (as corpus.py) and
conversion_report.json. Without TEST, test.spacy holds the dev docs, so what
gets evaluated is dev, which also chose the best checkpoint and the
calibration; the report says so. OUTPUT_DIR may not be named after a
benchmark (conllpp, conllpp_*, ...), whose corpora and committed metrics a
custom run would otherwise replace.
"""

import argparse
import gzip
import json
import sys
import zlib
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import spacy
import srsly
from spacy.language import Language
from spacy.tokens import Doc, DocBin, Span
from spacy.util import filter_spans, get_words_and_spaces

from .corpus import (
    DATASETS,
    DOC_ID_KEY,
    _open,
    _positive_int,
    read_conll,
    sentences_to_doc,
    write_split,
)
from .tags import split_tag

FORMATS = ("auto", "jsonl", "iob", "spacy")
ALIGNMENT_MODES = ("strict", "expand", "contract")
DEFAULT_MAX_SPAN_LENGTH = 8  # SpanDecoder.v2's max_span_length in configs/spandec.cfg
SUFFIX_FORMATS = {
    ".jsonl": "jsonl",
    ".json": "jsonl",
    ".ndjson": "jsonl",
    ".spacy": "spacy",
    ".conll": "iob",
    ".iob": "iob",
    ".bio": "iob",
    ".tsv": "iob",
    ".txt": "iob",
}
OVERLAP_RULE = (
    "of overlapping spans the longest is kept, of equally long ones the one that starts first, "
    "of identical offsets the one listed first (spacy.util.filter_spans); exact duplicates are dropped"
)
REPORT_NAME = "conversion_report.json"
PRINTED_PROBLEMS = 20  # per split; the report file has all of them

# What happened to an annotation or record.
DROPPED, SNAPPED, TRIMMED, KEPT, SKIPPED = "dropped", "snapped", "trimmed", "kept", "record skipped"
# Kinds of problems.
INVALID_RECORD = "invalid_record"
REJECTED = "rejected"
TOKENS_MISMATCH = "tokens_mismatch"
NO_SPANS_FIELD = "no_spans_field"
MISSING_SPANS_KEY = "missing_spans_key"
INVALID_SPAN = "invalid_span"
OUTSIDE_TEXT = "outside_text"
EMPTY_LABEL = "empty_label"
INVALID_TAG = "invalid_tag"
MISALIGNED = "misaligned"
WHITESPACE = "whitespace"
DUPLICATE = "duplicate"
OVERLAP = "overlap"
TOO_LONG = "too_long"


class UnusableData(ValueError):
    """The data cannot be converted at all (unreadable file, no usable doc)."""


@dataclass
class Options:
    alignment_mode: str = "strict"
    max_span_length: int = DEFAULT_MAX_SPAN_LENGTH
    spans_key: Optional[str] = None
    lang: str = "en"


@dataclass(frozen=True)
class Where:
    """A record's place: its line in a text file, or its index in a DocBin."""

    file: str
    line: Optional[int] = None
    doc_index: Optional[int] = None

    def __str__(self) -> str:
        return (
            f"{self.file}:{self.line}"
            if self.line is not None
            else f"{self.file} doc {self.doc_index}"
        )


@dataclass
class Problem:
    file: str
    line: Optional[int]
    doc_index: Optional[int]
    kind: str
    action: str
    message: str

    def __str__(self) -> str:
        return f"{Where(self.file, self.line, self.doc_index)}: {self.kind}: {self.message} [{self.action}]"


@dataclass
class SplitResult:
    """The docs of one split and everything reported while reading them."""

    split: str
    path: Path
    format: str
    format_from: str
    records: int = 0
    docs: List[Doc] = field(default_factory=list)
    problems: List[Problem] = field(default_factory=list)

    def add(self, where: Where, kind: str, action: str, message: str) -> None:
        self.problems.append(
            Problem(where.file, where.line, where.doc_index, kind, action, message)
        )

    def counts(self) -> Dict[str, Any]:
        labels = Counter(ent.label_ for doc in self.docs for ent in doc.ents)
        return {
            "file": str(self.path),
            "format": self.format,
            "format_from": self.format_from,
            "records": self.records,
            "docs": len(self.docs),
            "spans": dict(sorted(labels.items())),
            "spans_total": sum(labels.values()),
            "spans_lost": _count(p.kind for p in self.problems if p.action == DROPPED),
            "spans_snapped": sum(p.action == SNAPPED for p in self.problems),
            "spans_trimmed": sum(p.action == TRIMMED for p in self.problems),
            "spans_too_long_kept": sum(p.kind == TOO_LONG for p in self.problems),
            "records_skipped": _count(p.kind for p in self.problems if p.action == SKIPPED),
        }


def _count(kinds: Iterable[str]) -> Dict[str, int]:
    return dict(sorted(Counter(kinds).items()))


def _listed(counts: Dict[str, int]) -> str:
    return f" ({', '.join(f'{key} {n}' for key, n in counts.items())})" if counts else ""


def _show(span: Span) -> str:
    return f"{span.label_} {span.text!r} [{span.start_char}, {span.end_char})"


# ---------------------------------------------------------------------------
# Formats


def detect_format(path: Path) -> Tuple[str, str]:
    """(format, how it was found): the extension if it is a known one, else
    the first bytes (zlib: a DocBin; `{`: JSONL; other text: IOB)."""
    suffixes = [s.lower() for s in Path(path).suffixes if s.lower() != ".gz"]
    if suffixes and suffixes[-1] in SUFFIX_FORMATS:
        return SUFFIX_FORMATS[suffixes[-1]], f"extension {suffixes[-1]}"
    opener = gzip.open if Path(path).suffix == ".gz" else open
    with opener(path, "rb") as fh:
        head = fh.read(4096)
    if not head.strip():
        return "iob", "content (empty)"
    try:
        zlib.decompressobj().decompress(head)
        return "spacy", "content (zlib-compressed: a DocBin)"
    except zlib.error:
        pass
    if head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{"):
        return "jsonl", "content (starts with '{')"
    return "iob", "content (text, not JSON)"


def _align(
    doc: Doc, start: int, end: int, label: str, where: Where, options: Options, result: SplitResult
) -> Optional[Span]:
    """The span at character offsets [start, end), snapped or dropped when
    they are not token boundaries, as `--alignment-mode` says."""
    span = doc.char_span(start, end, label=label)
    if span is not None:
        return span
    snaps = {
        mode: doc.char_span(start, end, label=label, alignment_mode=mode)
        for mode in ("expand", "contract")
    }
    options_text = ", ".join(
        f"{mode} gives {_show(s) if s is not None else 'no span'}" for mode, s in snaps.items()
    )
    what = f"{label} {doc.text[start:end]!r} [{start}, {end}) does not fall on token boundaries"
    if options.alignment_mode == "strict":
        result.add(
            where,
            MISALIGNED,
            DROPPED,
            f"{what}; fix the offsets or pass --alignment-mode expand|contract "
            f"(doc.char_span(..., alignment_mode=...)): {options_text}",
        )
        return None
    snapped = snaps[options.alignment_mode]
    if snapped is None:
        result.add(
            where,
            MISALIGNED,
            DROPPED,
            f"{what}; --alignment-mode {options.alignment_mode} leaves no token ({options_text})",
        )
        return None
    result.add(
        where,
        MISALIGNED,
        SNAPPED,
        f"{what}; snapped to {_show(snapped)} (--alignment-mode {options.alignment_mode})",
    )
    return snapped


def _flatten(
    doc: Doc, candidates: List[Tuple[Span, Where]], options: Options, result: SplitResult
) -> List[Span]:
    """The flat entities of a doc (OVERLAP_RULE); spans longer than the
    model's candidates are kept and reported."""
    unique: List[Tuple[Span, Where]] = []
    seen = set()
    for span, where in candidates:
        key = (span.start, span.end, span.label_)
        if key in seen:
            result.add(where, DUPLICATE, DROPPED, f"{_show(span)} is annotated twice")
            continue
        seen.add(key)
        unique.append((span, where))
    kept = filter_spans([span for span, _ in unique])
    kept_ids = {id(span) for span in kept}
    for span, where in unique:
        if id(span) in kept_ids:
            if len(span) > options.max_span_length:
                result.add(
                    where,
                    TOO_LONG,
                    KEPT,
                    f"{_show(span)} has {len(span)} tokens, more than max_span_length {options.max_span_length}: "
                    "kept in the data, but SpanDec cannot predict it (raise max_span_length in the config)",
                )
            continue
        winner = next(k for k in kept if k.start < span.end and span.start < k.end)
        why = (
            "longer"
            if len(winner) > len(span)
            else "as long, starts first"
            if winner.start < span.start
            else "same tokens, listed first"
        )
        result.add(
            where,
            OVERLAP,
            DROPPED,
            f"{_show(span)} overlaps {_show(winner)}, which is kept ({why})",
        )
    return kept


def _trim(span: Span, where: Where, result: SplitResult) -> Optional[Span]:
    """The span without whitespace tokens at its edges (see the module doc)."""
    start, end = span.start, span.end
    while start < end and span.doc[start].is_space:
        start += 1
    while end > start and span.doc[end - 1].is_space:
        end -= 1
    if (start, end) == (span.start, span.end):
        return span
    if start == end:
        result.add(where, WHITESPACE, DROPPED, f"{_show(span)} is only whitespace")
        return None
    trimmed = Span(span.doc, start, end, label=span.label_)
    result.add(
        where,
        WHITESPACE,
        TRIMMED,
        f"{_show(span)} has whitespace at an edge: trimmed to {_show(trimmed)}",
    )
    return trimmed


def _make_doc(nlp: Language, text: str, tokens: Any, where: Where, result: SplitResult) -> Doc:
    """The record's own tokens when they reproduce its text, else spaCy's."""
    if tokens is not None:
        try:
            words, spaces = get_words_and_spaces([token["text"] for token in tokens], text)
            return Doc(nlp.vocab, words=words, spaces=spaces)
        except (TypeError, KeyError, ValueError):
            result.add(
                where,
                TOKENS_MISMATCH,
                KEPT,
                f'its "tokens" do not reproduce its text: '
                f"tokenized with spaCy's '{nlp.lang}' tokenizer instead",
            )
    return nlp.make_doc(text)


def _is_offset(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _record_doc(
    record: Any, nlp: Language, where: Where, options: Options, result: SplitResult
) -> Optional[Doc]:
    if not isinstance(record, dict):
        result.add(where, INVALID_RECORD, SKIPPED, f"a JSON {type(record).__name__}, not an object")
        return None
    text = record.get("text")
    if not isinstance(text, str) or not text.strip():
        result.add(where, INVALID_RECORD, SKIPPED, 'no "text", or an empty one')
        return None
    if record.get("answer") in ("reject", "ignore"):
        result.add(
            where, REJECTED, SKIPPED, f'"answer": "{record["answer"]}": not a gold annotation'
        )
        return None
    raw_spans = record.get("spans")
    if raw_spans is None:
        result.add(where, NO_SPANS_FIELD, KEPT, 'no "spans": read as a text without entities')
        raw_spans = []
    elif not isinstance(raw_spans, list):
        result.add(where, INVALID_RECORD, SKIPPED, '"spans" is not a list')
        return None
    doc = _make_doc(nlp, text, record.get("tokens"), where, result)
    candidates = []
    for number, raw in enumerate(raw_spans, 1):
        if (
            not isinstance(raw, dict)
            or not _is_offset(raw.get("start"))
            or not _is_offset(raw.get("end"))
        ):
            result.add(
                where,
                INVALID_SPAN,
                DROPPED,
                f'span {number} ({json.dumps(raw)[:80]}) needs integer "start" and "end"',
            )
            continue
        start, end, label = raw["start"], raw["end"], raw.get("label")
        if end <= start:
            result.add(
                where,
                INVALID_SPAN,
                DROPPED,
                f"span {number} [{start}, {end}) {label!r} is empty: end <= start",
            )
            continue
        if start < 0 or end > len(text):
            result.add(
                where,
                OUTSIDE_TEXT,
                DROPPED,
                f"span {number} [{start}, {end}) {label!r} is outside the "
                f"text, which has {len(text)} characters",
            )
            continue
        if not isinstance(label, str) or not label.strip():
            result.add(
                where,
                EMPTY_LABEL,
                DROPPED,
                f"span {number} {text[start:end]!r} [{start}, {end}) has no label",
            )
            continue
        segment = text[start:end]
        if not segment.strip():
            result.add(
                where,
                WHITESPACE,
                DROPPED,
                f"span {number} {segment!r} [{start}, {end}) {label!r} is only whitespace",
            )
            continue
        new_start, new_end = (
            start + len(segment) - len(segment.lstrip()),
            end - len(segment) + len(segment.rstrip()),
        )
        if (new_start, new_end) != (start, end):
            result.add(
                where,
                WHITESPACE,
                TRIMMED,
                f"span {number} {segment!r} [{start}, {end}) {label!r} has whitespace "
                f"at an edge: trimmed to [{new_start}, {new_end})",
            )
            start, end = new_start, new_end
        span = _align(doc, start, end, label, where, options, result)
        if span is not None:
            candidates.append((span, where))
    doc.ents = _flatten(doc, candidates, options, result)
    doc.user_data[DOC_ID_KEY] = str(where)
    return doc


def read_jsonl(path: Path, nlp: Language, options: Options, result: SplitResult) -> None:
    with _open(path) as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            result.records += 1
            where = Where(str(path), line=lineno)
            try:
                record = json.loads(line.lstrip("\ufeff"))
            except ValueError as err:
                result.add(where, INVALID_RECORD, SKIPPED, f"not JSON ({err})")
                continue
            doc = _record_doc(record, nlp, where, options, result)
            if doc is not None:
                result.docs.append(doc)


def read_iob(path: Path, nlp: Language, options: Options, result: SplitResult) -> None:
    """One doc per sentence; a bad tag is reported by its line and read as O."""
    try:
        for raw in read_conll(path):
            doc_id = None if raw.index is None else f"{path}#{raw.index}"
            for sentence, first_line in zip(raw.sentences, raw.lines):
                result.records += 1
                tokens = []
                for i, (token, tag) in enumerate(sentence):
                    try:
                        split_tag(tag)
                    except ValueError:
                        kind = EMPTY_LABEL if tag in ("B-", "I-") else INVALID_TAG
                        result.add(
                            Where(str(path), line=first_line + i),
                            kind,
                            DROPPED,
                            f"tag {tag!r} of {token!r} is not O, B-X or I-X: read as O",
                        )
                        tag = "O"
                    tokens.append((token, tag))
                doc = sentences_to_doc(nlp.vocab, [tokens], doc_id=doc_id)
                ents = [(ent, Where(str(path), line=first_line + ent.start)) for ent in doc.ents]
                doc.ents = _flatten(doc, ents, options, result)
                result.docs.append(doc)
    except UnicodeDecodeError:
        raise
    except ValueError as err:
        raise UnusableData(
            f"{err} (read as CoNLL/IOB: TOKEN ... TAG a line; --format sets the format)"
        ) from None


def read_docbin(path: Path, nlp: Language, options: Options, result: SplitResult) -> None:
    try:
        docs = list(DocBin().from_disk(path).get_docs(nlp.vocab))
    except Exception as err:  # zlib, msgpack and spaCy all raise their own types
        raise UnusableData(
            f"{path}: not a spaCy DocBin ({type(err).__name__}: {err}); --format sets the format"
        ) from None
    for index, doc in enumerate(docs):
        result.records += 1
        where = Where(str(path), doc_index=index)
        if not doc.text.strip():
            result.add(where, INVALID_RECORD, SKIPPED, "an empty doc")
            continue
        if options.spans_key is None:
            spans = list(doc.ents)
        elif options.spans_key in doc.spans:
            spans = list(doc.spans[options.spans_key])
        else:
            result.add(
                where,
                MISSING_SPANS_KEY,
                SKIPPED,
                f"no doc.spans[{options.spans_key!r}] (its keys: {sorted(doc.spans) or 'none'})",
            )
            continue
        candidates = []
        for span in spans:
            if not span.label_.strip():
                result.add(where, EMPTY_LABEL, DROPPED, f"{_show(span)} has no label")
                continue
            trimmed = _trim(span, where, result)
            if trimmed is not None:
                candidates.append((trimmed, where))
        doc.ents = _flatten(doc, candidates, options, result)
        result.docs.append(doc)


READERS = {"jsonl": read_jsonl, "iob": read_iob, "spacy": read_docbin}


def read_split(split: str, path: Path, fmt: str, nlp: Language, options: Options) -> SplitResult:
    path = Path(path)
    fmt, found = detect_format(path) if fmt == "auto" else (fmt, "--format")
    result = SplitResult(split, path, fmt, found)
    try:
        READERS[fmt](path, nlp, options, result)
    except UnicodeDecodeError as err:
        raise UnusableData(
            f"{path}: not UTF-8 text ({err}); read as {fmt} ({found}), --format sets the format"
        ) from None
    return result


# ---------------------------------------------------------------------------
# Conversion and report


def check_output_name(output_dir: Path) -> None:
    """Refuse a benchmark's folder name: in the project, corpus/, training/,
    metrics/ and results/ share it, and the benchmarks' metrics are committed."""
    name = Path(output_dir).name
    for dataset in DATASETS:
        if name == dataset or name.startswith(dataset + "_"):
            raise UnusableData(
                f"{output_dir} is named like the {dataset} benchmark's runs; give your data its own "
                "name (in the project: --vars.dataset custom)"
            )


def _usability_errors(results: Dict[str, SplitResult]) -> List[str]:
    errors = [
        f"{r.split} ({r.path}): no usable doc among {r.records} records (problems above)"
        for r in results.values()
        if not r.docs
    ]
    train = results["train"]
    if train.docs and not any(doc.ents for doc in train.docs):
        errors.append(f"train ({train.path}): no entity span is left, so there is nothing to learn")
    return errors


def _warnings(results: Dict[str, SplitResult], has_test: bool) -> List[str]:
    warnings = []
    if not has_test:
        warnings.append(
            "no test file: test.spacy holds the dev docs, so `evaluate` scores dev, the set that "
            "also chose the best checkpoint and the calibration (an optimistic score)"
        )
    train_labels = {ent.label_ for doc in results["train"].docs for ent in doc.ents}
    for split, result in results.items():
        unseen = sorted({ent.label_ for doc in result.docs for ent in doc.ents} - train_labels)
        if unseen:
            warnings.append(
                f"{split} has labels that train lacks, which the model cannot predict: {', '.join(unseen)}"
            )
        if split != "train" and result.docs and not any(doc.ents for doc in result.docs):
            warnings.append(f"{split} has no entity span: its scores are empty")
    return warnings


def convert_custom(
    train: Path,
    dev: Path,
    test: Optional[Path],
    output_dir: Path,
    fmt: str = "auto",
    options: Optional[Options] = None,
) -> Dict[str, Any]:
    """Read, check and write the splits; return the report written to
    OUTPUT_DIR/conversion_report.json. Raises UnusableData (after writing
    the report, but no DocBin) when the data cannot be used."""
    options = options or Options()
    output_dir = Path(output_dir)
    check_output_name(output_dir)
    paths = {"train": Path(train), "dev": Path(dev), **({"test": Path(test)} if test else {})}
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"No such file: {', '.join(missing)}")
    nlp = spacy.blank(options.lang)
    results = {split: read_split(split, path, fmt, nlp, options) for split, path in paths.items()}
    report: Dict[str, Any] = {
        "evaluated_on": "test" if test else "dev",
        "alignment_mode": options.alignment_mode,
        "max_span_length": options.max_span_length,
        "spans_key": options.spans_key,
        "overlap_rule": OVERLAP_RULE,
        "splits": {split: result.counts() for split, result in results.items()},
        "warnings": _warnings(results, bool(test)),
        "errors": _usability_errors(results),
        "problems": {
            split: [asdict(p) for p in result.problems] for split, result in results.items()
        },
    }
    output_dir.mkdir(parents=True, exist_ok=True)
    if not report["errors"]:
        splits = {
            split: write_split(output_dir, split, result.docs) for split, result in results.items()
        }
        if not test:
            splits["test"] = write_split(output_dir, "test", results["dev"].docs)
        sources = {split: [str(path)] for split, path in paths.items()}
        srsly.write_json(
            output_dir / "stats.json",
            {"dataset": output_dir.name, "sources": sources, "splits": splits},
        )
    srsly.write_json(output_dir / REPORT_NAME, report)
    print_report(report, output_dir / REPORT_NAME)
    if report["errors"]:
        raise UnusableData("; ".join(report["errors"]))
    return report


def print_report(report: Dict[str, Any], path: Path) -> None:
    for split, counts in report["splits"].items():
        print(
            f"{split}: {counts['file']} ({counts['format']}, from the {counts['format_from']}): "
            f"{counts['records']} records -> {counts['docs']} docs, {counts['spans_total']} spans"
            f"{_listed(counts['spans'])}"
        )
        print(
            f"  spans lost {sum(counts['spans_lost'].values())}{_listed(counts['spans_lost'])}; "
            f"snapped {counts['spans_snapped']}; trimmed {counts['spans_trimmed']}; kept but longer than {report['max_span_length']} "
            f"tokens {counts['spans_too_long_kept']}; records skipped "
            f"{sum(counts['records_skipped'].values())}{_listed(counts['records_skipped'])}"
        )
        problems = report["problems"][split]
        for problem in problems[:PRINTED_PROBLEMS]:
            print(f"  {Problem(**problem)}")
        if len(problems) > PRINTED_PROBLEMS:
            print(f"  ... and {len(problems) - PRINTED_PROBLEMS} more in {path}")
    if any(p["kind"] == OVERLAP for problems in report["problems"].values() for p in problems):
        print(f"overlaps: {report['overlap_rule']}")
    print(f"evaluated on: {report['evaluated_on']}")
    for warning in report["warnings"]:
        print(f"warning: {warning}")
    print(f"report: {path}")


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m spacy_spandec convert-custom",
        usage="%(prog)s TRAIN DEV [TEST] OUTPUT_DIR [options]",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("paths", nargs="+", metavar="TRAIN DEV [TEST] OUTPUT_DIR", type=Path)
    parser.add_argument(
        "--format",
        dest="fmt",
        choices=FORMATS,
        default="auto",
        help="the input format of every file (auto: from each file's extension, then content)",
    )
    parser.add_argument(
        "--alignment-mode",
        choices=ALIGNMENT_MODES,
        default="strict",
        help="spans off token boundaries: strict drops them, expand/contract snaps them",
    )
    parser.add_argument(
        "--spans-key", default=None, help="DocBin input: read doc.spans[KEY] instead of doc.ents"
    )
    parser.add_argument(
        "--max-span-length",
        type=_positive_int,
        default=DEFAULT_MAX_SPAN_LENGTH,
        help="the model's max_span_length: longer spans are kept and reported",
    )
    parser.add_argument(
        "--lang",
        default="en",
        help="language of the tokenizer for JSONL texts (the config's nlp.lang)",
    )
    args = parser.parse_args(argv)
    if len(args.paths) not in (3, 4):
        parser.error(f"expected TRAIN DEV [TEST] OUTPUT_DIR, got {len(args.paths)} paths")
    *inputs, output_dir = args.paths
    train, dev, test = (inputs + [None])[:3]
    options = Options(args.alignment_mode, args.max_span_length, args.spans_key, args.lang)
    try:
        convert_custom(train, dev, test, output_dir, args.fmt, options)
    except (FileNotFoundError, UnusableData) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
