"""Raw NER benchmark files -> spaCy `DocBin` corpora.

The four benchmarks of the SpanDec paper come in three raw formats; training
and evaluation only ever see `.spacy` files. This module is the one place that
decides how raw files are read, which files make up which split, how labels
are mapped and how sentences are grouped into samples, so that every model
variant trains and is scored on exactly the same data.

Raw formats (one token per line, blank line after each sentence):

* CoNLL++: ``TOKEN POS CHUNK NER`` (space-separated), ``-DOCSTART-`` lines
  start documents;
* CrossNER, BC5CDR: ``TOKEN<TAB>TAG``, no document marks;
* normalised ``<split>.iob.gz`` (see the dataset MANIFEST): ``TOKEN<TAB>TAG``,
  ``# doc`` lines start documents. OntoNotes 5 is supplied this way.

RAW_DIR layout, one folder per dataset (the `project.yml` assets fill it):

    conllpp/     conllpp_{train,dev,test}.txt
    crossner/    conllpp/conllpp_{train,dev}.txt
                 {politics,science,music,literature,ai}/{train,dev,test}.txt
    ontonotes5/  {train,dev,test}.iob.gz
    bc5cdr/      {train,devel,test}.tsv

Where a raw file is missing, its normalised copy is read instead, at
``RAW_DIR/<MANIFEST name>.iob.gz`` (e.g. ``conllpp/train.iob.gz``,
``crossner_ai/dev.iob.gz``): so the datasets folder of the MANIFEST itself is a
valid RAW_DIR, and the normalised files give the same docs as the raw ones.

CLI (writes ``OUTPUT_DIR/{train,dev,test}.spacy``, for crossner also
``test_<domain>.spacy``, and ``OUTPUT_DIR/stats.json``)::

    python -m spacy_spandec convert DATASET RAW_DIR OUTPUT_DIR \\
        [--granularity sentence|chunk|mixed] [--max-tokens 74] [--limit K]
    python -m spacy_spandec stats DATASET RAW_DIR [same options]
"""

import argparse
import gzip
import json
import random
import sys
from collections import Counter
from dataclasses import dataclass, field
from itertools import chain, islice
from pathlib import Path
from typing import (
    Any,
    Callable,
    Dict,
    Iterable,
    Iterator,
    List,
    Mapping,
    NamedTuple,
    Optional,
    Sequence,
    TextIO,
    Tuple,
)

import srsly
from spacy.tokens import Doc, DocBin, Span
from spacy.vocab import Vocab

from .tags import bio_to_spans

DATASETS = ("conllpp", "crossner", "ontonotes5", "bc5cdr")
SPLITS = ("train", "dev", "test")
GRANULARITIES = ("sentence", "chunk", "mixed")
DEFAULT_MAX_TOKENS = 74
# `mixed`: the share of chunks kept whole in the training split; the rest are
# split into their sentences.
MIXED_CHUNK_SHARE = 0.5
CROSSNER_DOMAINS = ("politics", "science", "music", "literature", "ai")
# CrossNER's own names for the CoNLL types (MANIFEST.md), so that the CoNLL++
# part of the CrossNER training set shares labels with the five domains.
CONLL_TO_CROSSNER = {"PER": "person", "LOC": "location", "ORG": "organisation", "MISC": "misc"}
# Key in `Doc.user_data` naming the source document of a sample; it is how the
# statistics count documents after sentences have been split or packed.
DOC_ID_KEY = "spandec_doc_id"

Sentence = List[Tuple[str, str]]  # (token, tag) pairs


class RawDoc(NamedTuple):
    """One source document: `index` counts document marks in its file and is
    None for files without marks (CrossNER, BC5CDR: the whole file is one).
    `lines` holds the 1-based line of each sentence's first token, so that a
    bad tag in a user's file can be reported by its line (custom_data.py)."""

    index: Optional[int]
    sentences: List[Sentence]
    lines: Sequence[int] = ()


# ---------------------------------------------------------------------------
# Readers


def _open(path: Path) -> TextIO:
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8")
    return open(path, encoding="utf-8")


def _read_docs(
    path: Path,
    split_line: Callable[[str], Tuple[str, str]],
    is_doc_mark: Callable[[str], bool],
) -> Iterator[RawDoc]:
    """Shared line loop of all formats: blank lines end sentences (runs of
    them never make empty sentences) and document marks end documents."""
    index: Optional[int] = None
    sentences: List[Sentence] = []
    lines: List[int] = []
    sentence: Sentence = []
    with _open(path) as fh:
        for lineno, line in enumerate(fh, 1):
            line = line.rstrip("\r\n")
            if not line.strip() or is_doc_mark(line):
                if sentence:
                    sentences.append(sentence)
                    sentence = []
                if is_doc_mark(line):
                    if sentences:
                        yield RawDoc(index, sentences, lines)
                    sentences, lines = [], []
                    index = 0 if index is None else index + 1
                continue
            if not sentence:
                lines.append(lineno)
            try:
                sentence.append(split_line(line))
            except ValueError as err:
                raise ValueError(f"{path}:{lineno}: {err}: {line!r}") from None
    if sentence:
        sentences.append(sentence)
    if sentences:
        yield RawDoc(index, sentences, lines)


def _split_conll(line: str) -> Tuple[str, str]:
    columns = line.split()
    if len(columns) < 2:
        raise ValueError("expected 'TOKEN ... TAG' columns")
    return columns[0], columns[-1]


def _split_tsv(line: str) -> Tuple[str, str]:
    columns = line.split("\t")
    if len(columns) != 2 or not columns[0]:
        raise ValueError("expected 'TOKEN<TAB>TAG'")
    return columns[0], columns[1]


def read_conll(path: Path) -> Iterator[RawDoc]:
    """CoNLL(++)-2003: whitespace columns, tag in the last one; `-DOCSTART-`
    lines start documents and are dropped."""
    return _read_docs(Path(path), _split_conll, lambda line: line.startswith("-DOCSTART-"))


def read_tsv(path: Path) -> Iterator[RawDoc]:
    """CrossNER / BC5CDR `token<TAB>tag` files (no document marks)."""
    return _read_docs(Path(path), _split_tsv, lambda line: False)


def read_iob(path: Path) -> Iterator[RawDoc]:
    """The normalised `<split>.iob.gz` format (gzip or plain), `# doc` marks."""
    return _read_docs(Path(path), _split_tsv, lambda line: line == "# doc")


# ---------------------------------------------------------------------------
# Sources and splits


@dataclass
class Source:
    """One raw file and how to read it. `name` is the MANIFEST file name
    without `.iob.gz` (e.g. "conllpp/train"), used in stats and document ids."""

    name: str
    path: Path
    reader: Callable[[Path], Iterator[RawDoc]]
    label_map: Mapping[str, str] = field(default_factory=dict)

    def read(self) -> Iterator[RawDoc]:
        return self.reader(self.path)


def dataset_splits(dataset: str, raw_dir: Path) -> Dict[str, List[Source]]:
    """Output split name -> the raw files it is made of, in order.

    CrossNER follows the paper's setting (MANIFEST.md): train = CoNLL++
    train+dev relabelled to CrossNER names + train+dev of the five domains;
    test = the five domain tests pooled, plus one `test_<domain>` split each
    for per-domain F1. dev = the five domains' dev sets, which are also in
    train (the paper trains on train+dev), so dev scores are optimistic and
    model selection on them is only a convergence check.
    """
    raw = Path(raw_dir)
    return {
        split: [_prefer_normalised(raw, s) for s in sources]
        for split, sources in raw_splits(dataset, raw).items()
    }


def _prefer_normalised(raw_dir: Path, source: Source) -> Source:
    """The raw file if it is there, else its normalised copy if that is."""
    normalised = raw_dir / f"{source.name}.iob.gz"
    if source.path.is_file() or not normalised.is_file():
        return source
    return Source(source.name, normalised, read_iob, source.label_map)


def raw_splits(dataset: str, raw_dir: Path) -> Dict[str, List[Source]]:
    """`dataset_splits` in the raw layout only, whether the files exist or not."""
    raw = Path(raw_dir)
    if dataset == "conllpp":
        return {s: [Source(f"conllpp/{s}", raw / f"conllpp_{s}.txt", read_conll)] for s in SPLITS}
    if dataset == "bc5cdr":  # its dev split is named "devel"
        return {
            s: [Source(f"bc5cdr/{s}", raw / f"{'devel' if s == 'dev' else s}.tsv", read_tsv)]
            for s in SPLITS
        }
    if dataset == "ontonotes5":
        return {s: [Source(f"ontonotes5/{s}", raw / f"{s}.iob.gz", read_iob)] for s in SPLITS}
    if dataset == "crossner":

        def domain(name: str, split: str) -> Source:
            return Source(f"crossner_{name}/{split}", raw / name / f"{split}.txt", read_tsv)

        conll = [
            Source(
                f"conllpp/{s}", raw / "conllpp" / f"conllpp_{s}.txt", read_conll, CONLL_TO_CROSSNER
            )
            for s in ("train", "dev")
        ]
        splits = {
            "train": conll + [domain(d, s) for d in CROSSNER_DOMAINS for s in ("train", "dev")],
            "dev": [domain(d, "dev") for d in CROSSNER_DOMAINS],
            "test": [domain(d, "test") for d in CROSSNER_DOMAINS],
        }
        splits.update({f"test_{d}": [domain(d, "test")] for d in CROSSNER_DOMAINS})
        return splits
    raise ValueError(f"Unknown dataset {dataset!r}; expected one of {', '.join(DATASETS)}.")


def check_raw_files(dataset: str, raw_dir: Path) -> None:
    """Fail before converting anything if a raw file is missing, naming it."""
    missing = sorted(
        {
            str(s.path)
            for sources in dataset_splits(dataset, raw_dir).values()
            for s in sources
            if not s.path.is_file()
        }
    )
    if missing:
        raise FileNotFoundError(
            f"Missing raw file(s) for {dataset} under {raw_dir}: {', '.join(missing)}. "
            "Fetch them with `spacy project run assets . --vars.dataset "
            f"{dataset}`, or give a folder with the normalised <name>/<split>.iob.gz "
            "files of the dataset MANIFEST (the layout is described in spacy_spandec/corpus.py)."
        )


# ---------------------------------------------------------------------------
# Raw documents -> spaCy docs


def pack_sentences(sentences: Sequence[Sentence], max_tokens: int) -> List[List[Sentence]]:
    """Greedily pack consecutive sentences into chunks of at most `max_tokens`
    tokens; a longer sentence is a chunk on its own. Callers pass the
    sentences of one document, so chunks never cross documents."""
    chunks: List[List[Sentence]] = []
    current: List[Sentence] = []
    size = 0
    for sentence in sentences:
        if current and size + len(sentence) > max_tokens:
            chunks.append(current)
            current, size = [], 0
        current.append(sentence)
        size += len(sentence)
    if current:
        chunks.append(current)
    return chunks


def sentences_to_doc(
    vocab: Vocab,
    sentences: Sequence[Sentence],
    label_map: Optional[Mapping[str, str]] = None,
    doc_id: Optional[str] = None,
) -> Doc:
    """One sample: source tokens (no re-tokenisation), a sentence start per
    sentence, entities from BIO/IOB1 tags read per sentence (so an entity
    never crosses a sentence boundary inside a chunk)."""
    label_map = label_map or {}
    words: List[str] = []
    sent_starts: List[bool] = []
    spans: List[Tuple[int, int, str]] = []
    for sentence in sentences:
        offset = len(words)
        words.extend(token for token, _ in sentence)
        sent_starts.extend([True] + [False] * (len(sentence) - 1))
        for start, end, label in bio_to_spans([tag for _, tag in sentence]):
            spans.append((offset + start, offset + end, label_map.get(label, label)))
    spaces = [True] * (len(words) - 1) + [False]
    doc = Doc(vocab, words=words, spaces=spaces, sent_starts=sent_starts)
    doc.ents = [Span(doc, start, end, label=label) for start, end, label in spans]
    if doc_id is not None:
        doc.user_data[DOC_ID_KEY] = doc_id
    return doc


def source_docs(
    vocab: Vocab,
    source: Source,
    granularity: str = "sentence",
    max_tokens: int = DEFAULT_MAX_TOKENS,
) -> Iterator[Doc]:
    """Samples of one raw file: one doc per sentence, per chunk of sentences
    of one document (`granularity="chunk"`), or a mix of both (`"mixed"`).

    `mixed` packs chunks as `chunk` does and keeps each one whole with
    probability MIXED_CHUNK_SHARE, else splits it into its sentences: a model
    trained on it meets entities both alone in their sentence and among the
    neighbouring sentences of a multi-window document, as `nlp(article)`
    gives them, while every token is still seen once per epoch. The choice is
    seeded by the document's name, so a conversion is reproducible.

    Chunks never cross documents, so a file without document marks (CrossNER,
    BC5CDR), whose documents are unknown, gives sentences at every granularity:
    `mixed` is a safe default for any benchmark."""
    if granularity not in GRANULARITIES:
        raise ValueError(f"Unknown granularity {granularity!r}; expected one of {GRANULARITIES}.")
    for raw in source.read():
        name = f"{source.name}#{raw.index}"
        doc_id = None if raw.index is None else name
        if granularity == "sentence" or raw.index is None:
            samples: Iterable[List[Sentence]] = ([s] for s in raw.sentences)
        elif granularity == "chunk":
            samples = pack_sentences(raw.sentences, max_tokens)
        else:
            samples = _mix_chunks(pack_sentences(raw.sentences, max_tokens), name)
        for sample in samples:
            yield sentences_to_doc(vocab, sample, source.label_map, doc_id)


def _mix_chunks(chunks: Sequence[List[Sentence]], seed: str) -> Iterator[List[Sentence]]:
    rng = random.Random(seed)
    for chunk in chunks:
        if rng.random() < MIXED_CHUNK_SHARE:
            yield chunk
        else:
            yield from ([sentence] for sentence in chunk)


def dataset_docs(
    vocab: Vocab,
    splits: Mapping[str, Sequence[Source]],
    granularity: str = "sentence",
    max_tokens: int = DEFAULT_MAX_TOKENS,
    limit: int = 0,
) -> Iterator[Tuple[str, Iterator[Doc]]]:
    """(split, samples) for every split; `mixed` applies to the training
    split only: dev and test stay sentences, comparable with every other run."""
    for split, sources in splits.items():
        split_granularity = (
            "sentence" if granularity == "mixed" and split != "train" else granularity
        )
        yield split, split_docs(vocab, sources, split_granularity, max_tokens, limit)


def split_docs(
    vocab: Vocab,
    sources: Iterable[Source],
    granularity: str = "sentence",
    max_tokens: int = DEFAULT_MAX_TOKENS,
    limit: int = 0,
) -> Iterator[Doc]:
    """Samples of one split, in source order; `limit` > 0 keeps the first K
    (for smoke runs)."""
    docs = chain.from_iterable(source_docs(vocab, s, granularity, max_tokens) for s in sources)
    return islice(docs, limit) if limit > 0 else docs


# ---------------------------------------------------------------------------
# Statistics


def doc_sentences(doc: Doc) -> Iterable[Span]:
    """A converted doc's sentences; a doc without sentence boundaries (a
    user's JSONL record) is one sentence."""
    return doc.sents if doc.has_annotation("SENT_START") else [doc[:]]


def corpus_stats(docs: Iterable[Doc]) -> Dict[str, Any]:
    """Counts of converted docs, with the keys and meaning of the dataset
    MANIFEST / `verify.py --json` (sentences, documents, tokens, mentions,
    types) so the conversion can be checked against them; plus `samples`
    (number of docs) and the longest sample and sentence in tokens. A doc
    without sentence boundaries (a user's JSONL record) counts as one
    sentence."""
    samples = sentences = tokens = max_sample = max_sentence = 0
    types: Counter = Counter()
    doc_ids = set()
    for doc in docs:
        samples += 1
        tokens += len(doc)
        max_sample = max(max_sample, len(doc))
        for sent in doc_sentences(doc):
            sentences += 1
            max_sentence = max(max_sentence, len(sent))
        types.update(ent.label_ for ent in doc.ents)
        if DOC_ID_KEY in doc.user_data:
            doc_ids.add(doc.user_data[DOC_ID_KEY])
    return {
        "samples": samples,
        "sentences": sentences,
        "documents": len(doc_ids),
        "tokens": tokens,
        "mentions": sum(types.values()),
        "types": dict(sorted(types.items())),
        "max_sample_tokens": max_sample,
        "max_sentence_tokens": max_sentence,
    }


def source_stats(dataset: str, raw_dir: Path) -> Dict[str, Dict[str, Any]]:
    """Per raw file statistics (one doc per sentence), keyed like the MANIFEST
    files ("conllpp/test" <-> "conllpp/test.iob.gz"). Labels are after the
    dataset's label map, so CrossNER's CoNLL++ files show CrossNER names."""
    vocab = Vocab()
    sources = {s.name: s for group in dataset_splits(dataset, raw_dir).values() for s in group}
    return {name: corpus_stats(source_docs(vocab, s)) for name, s in sorted(sources.items())}


# ---------------------------------------------------------------------------
# Conversion


def write_split(output_dir: Path, split: str, docs: Sequence[Doc]) -> Dict[str, Any]:
    """Write `OUTPUT_DIR/<split>.spacy` (with user data: the document ids)
    and return its statistics; shared with the custom-data converter."""
    DocBin(docs=docs, store_user_data=True).to_disk(Path(output_dir) / f"{split}.spacy")
    return corpus_stats(docs)


def convert(
    dataset: str,
    raw_dir: Path,
    output_dir: Path,
    granularity: str = "sentence",
    max_tokens: int = DEFAULT_MAX_TOKENS,
    limit: int = 0,
    splits_wanted: Sequence[str] = SPLITS,
) -> Dict[str, Any]:
    """Write `<split>.spacy` for each split of `dataset` in `splits_wanted`
    (CrossNER's test_<domain> files count as test) and `stats.json`; returns
    what was written to `stats.json`."""
    check_raw_files(dataset, raw_dir)
    splits = {
        split: sources
        for split, sources in dataset_splits(dataset, raw_dir).items()
        if split.partition("_")[0] in splits_wanted
    }
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    vocab = Vocab()
    split_stats = {}
    for split, docs in dataset_docs(vocab, splits, granularity, max_tokens, limit):
        split_stats[split] = write_split(output_dir, split, list(docs))
    report = {
        "dataset": dataset,
        "granularity": granularity,
        "max_tokens": max_tokens if granularity != "sentence" else None,
        "chunk_share": MIXED_CHUNK_SHARE if granularity == "mixed" else None,
        "limit": limit,
        "sources": {split: [s.name for s in sources] for split, sources in splits.items()},
        "splits": split_stats,
    }
    srsly.write_json(output_dir / "stats.json", report)
    return report


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m spacy_spandec",
        description="Convert raw NER benchmark files to spaCy DocBin corpora.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    convert_cmd = commands.add_parser(
        "convert", help="write OUTPUT_DIR/<split>.spacy and stats.json"
    )
    stats_cmd = commands.add_parser(
        "stats",
        help="print per-raw-file statistics (comparable to verify.py --json) and per-split statistics",
    )
    for cmd in (convert_cmd, stats_cmd):
        cmd.add_argument("dataset", choices=DATASETS)
        cmd.add_argument(
            "raw_dir", type=Path, help="the dataset's raw folder (layout: module docstring)"
        )
    convert_cmd.add_argument("output_dir", type=Path)
    convert_cmd.add_argument(
        "--splits",
        nargs="+",
        choices=SPLITS,
        default=list(SPLITS),
        help="the splits to write (default: all)",
    )
    for cmd in (convert_cmd, stats_cmd):
        cmd.add_argument(
            "--granularity",
            choices=GRANULARITIES,
            default="sentence",
            help="one sample per sentence, per chunk of consecutive sentences of one document, "
            f"or mixed: each training chunk kept whole with probability {MIXED_CHUNK_SHARE}, else split "
            "into sentences (dev and test stay sentences)",
        )
        cmd.add_argument(
            "--max-tokens",
            type=_positive_int,
            default=DEFAULT_MAX_TOKENS,
            help="chunk size limit in tokens (chunk and mixed granularities)",
        )
        cmd.add_argument(
            "--limit",
            type=_non_negative_int,
            default=0,
            help="keep only the first K samples of each split (0: all)",
        )
    args = parser.parse_args(argv)
    try:
        if args.command == "convert":
            report = convert(
                args.dataset,
                args.raw_dir,
                args.output_dir,
                args.granularity,
                args.max_tokens,
                args.limit,
                args.splits,
            )
            for split, stats in report["splits"].items():
                print(
                    f"{args.output_dir / (split + '.spacy')}: {stats['samples']} samples, "
                    f"{stats['sentences']} sentences, {stats['tokens']} tokens, {stats['mentions']} mentions"
                )
        else:
            check_raw_files(args.dataset, args.raw_dir)
            vocab = Vocab()
            splits = {
                split: corpus_stats(docs)
                for split, docs in dataset_docs(
                    vocab,
                    dataset_splits(args.dataset, args.raw_dir),
                    args.granularity,
                    args.max_tokens,
                    args.limit,
                )
            }
            print(
                json.dumps(
                    {"sources": source_stats(args.dataset, args.raw_dir), "splits": splits},
                    indent=1,
                )
            )
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
