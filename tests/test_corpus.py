"""Tests of the corpus converter (spacy_spandec/corpus.py).

Small hand-written raw files check the formats, entity spans, IOB1 repair,
documents and chunks, split assembly and the CLI. When the team's data
(`../shared/datasets`, $SPANDEC_DATA_MIRROR or $SPANDEC_DATASETS_DIR) is
present, the converted real files (raw, else normalised) must reproduce the
MANIFEST statistics exactly (as recorded in `verify.py`, where it is), and
CoNLL++ must pack into the documented chunk counts.
"""

import gzip
import hashlib
import importlib.util
import os
import shutil
from pathlib import Path
from typing import Dict, List

import pytest
import srsly
from spacy.tokens import Doc, DocBin
from spacy.vocab import Vocab

from spacy_spandec import corpus
from spacy_spandec.corpus import (
    CONLL_TO_CROSSNER,
    CROSSNER_DOMAINS,
    DOC_ID_KEY,
    Source,
    convert,
    corpus_stats,
    dataset_splits,
    main,
    pack_sentences,
    read_conll,
    read_iob,
    read_tsv,
    sentences_to_doc,
    source_docs,
    source_stats,
    split_docs,
)

REPO = Path(__file__).resolve().parents[1]

# Two documents; the first ends with a run of blank lines, the second starts
# with an IOB1 `I-LOC` and has a label change without B- (I-PER -> I-LOC).
CONLL = """-DOCSTART- -X- -X- O

EU NNP B-NP B-ORG
rejects VBZ B-VP O
German JJ B-NP B-MISC
call NN I-NP O
. . O O

Peter NNP B-NP B-PER
Blackburn NNP I-NP I-PER



-DOCSTART- -X- -X- O

BRUSSELS NNP B-NP I-LOC
1996-08-22 CD I-NP O
Jan NNP I-NP I-PER
Smit NNP I-NP I-PER
Paris NNP I-NP I-LOC

"""

# No trailing blank line, a run of blank lines, and adjacent same-type B- tags.
TSV = (
    "Popular\tO\nopinion-based\tB-product\nrecommender\tI-product\n\n\n\n"
    "Alan\tB-researcher\nTuring\tI-researcher\nACL\tB-conference\nNAACL\tB-conference"
)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".gz":
        with gzip.open(path, "wt", encoding="utf-8") as fh:
            fh.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def ents(doc) -> List[tuple]:
    return [(e.start, e.end, e.label_) for e in doc.ents]


def load(path: Path) -> list:
    return list(DocBin().from_disk(path).get_docs(Vocab()))


# ---------------------------------------------------------------------------
# Readers


def test_read_conll_documents_sentences_and_tag_column(tmp_path):
    docs = list(read_conll(write(tmp_path / "c.txt", CONLL)))
    assert [d.index for d in docs] == [0, 1]
    assert [len(d.sentences) for d in docs] == [2, 1]  # blank-line runs make no empty sentence
    assert docs[0].sentences[0][:3] == [("EU", "B-ORG"), ("rejects", "O"), ("German", "B-MISC")]
    assert docs[1].sentences[0][-1] == ("Paris", "I-LOC")


def test_readers_give_the_line_of_each_sentence(tmp_path):
    docs = list(read_conll(write(tmp_path / "c.txt", CONLL)))
    assert [list(d.lines) for d in docs] == [[3, 9], [16]]  # after -DOCSTART- and blank-line runs
    assert list(next(read_tsv(write(tmp_path / "t.txt", TSV))).lines) == [1, 7]


def test_read_tsv_whole_file_is_one_unmarked_document(tmp_path):
    docs = list(read_tsv(write(tmp_path / "t.txt", TSV)))
    assert len(docs) == 1 and docs[0].index is None
    assert [len(s) for s in docs[0].sentences] == [3, 4]  # last sentence has no final blank line
    assert docs[0].sentences[1][0] == ("Alan", "B-researcher")


def test_read_iob_gz_doc_marks(tmp_path):
    text = "# doc\nA\tB-X\n\nB\tO\n\n# doc\nC\tI-Y\nD\tO\n\n"
    docs = list(read_iob(write(tmp_path / "train.iob.gz", text)))
    assert [(d.index, len(d.sentences)) for d in docs] == [(0, 2), (1, 1)]


def test_malformed_line_names_file_and_line(tmp_path):
    path = write(tmp_path / "bad.tsv", "a\tO\n\nno-tab-here\n")
    with pytest.raises(ValueError, match=r"bad\.tsv:3"):
        list(read_tsv(path))


# ---------------------------------------------------------------------------
# Docs, entities, chunks


def test_entities_with_iob1_repair_and_label_changes():
    tags = ["I-LOC", "O", "B-PER", "I-PER", "I-LOC", "B-ORG", "B-ORG", "O", "I-MISC", "I-MISC"]
    sentence = [(f"w{i}", tag) for i, tag in enumerate(tags)]
    doc = sentences_to_doc(Vocab(), [sentence])
    assert [t.text for t in doc] == [f"w{i}" for i in range(10)]
    assert ents(doc) == [
        (0, 1, "LOC"),
        (2, 4, "PER"),
        (4, 5, "LOC"),
        (5, 6, "ORG"),
        (6, 7, "ORG"),
        (8, 10, "MISC"),
    ]
    assert all(
        t.ent_iob_ == "O" for t in doc if not t.ent_type_
    )  # the rest is annotated O, not missing


def test_chunk_sentence_starts_and_no_entity_across_sentences():
    first = [("Peter", "B-PER")]
    second = [("Smith", "I-PER"), ("left", "O")]  # I-PER must not continue the previous sentence
    doc = sentences_to_doc(Vocab(), [first, second], label_map=CONLL_TO_CROSSNER, doc_id="x#0")
    assert [t.is_sent_start for t in doc] == [True, True, False]
    assert [len(s) for s in doc.sents] == [1, 2]
    assert ents(doc) == [(0, 1, "person"), (1, 2, "person")]
    assert doc.user_data[DOC_ID_KEY] == "x#0"
    assert doc.text == "Peter Smith left"


def test_pack_sentences_greedy_with_long_sentence_alone():
    sentences = [[("t", "O")] * n for n in (3, 3, 2, 10, 1, 5)]
    chunks = pack_sentences(sentences, max_tokens=6)
    assert [[len(s) for s in chunk] for chunk in chunks] == [[3, 3], [2], [10], [1, 5]]


def test_chunks_never_cross_documents(tmp_path):
    source = Source("c/train", write(tmp_path / "c.txt", CONLL), read_conll)
    docs = list(source_docs(Vocab(), source, "chunk", max_tokens=1000))
    assert [len(d) for d in docs] == [7, 5]
    assert [d.user_data[DOC_ID_KEY] for d in docs] == ["c/train#0", "c/train#1"]
    assert [len(list(d.sents)) for d in docs] == [2, 1]
    small = list(source_docs(Vocab(), source, "chunk", max_tokens=5))
    assert [len(d) for d in small] == [5, 2, 5]


@pytest.mark.parametrize("granularity", ["chunk", "mixed"])
def test_a_file_without_document_marks_gives_sentences(tmp_path, granularity):
    """CrossNER and BC5CDR files mark no documents: packing their sentences
    would make chunks across unknown documents, so every granularity, the
    project's default `mixed` included, gives their sentences."""
    source = Source("t/train", write(tmp_path / "t.txt", TSV), read_tsv)
    docs = list(source_docs(Vocab(), source, granularity, max_tokens=1000))
    sentences = list(source_docs(Vocab(), source, "sentence"))
    assert [d.text for d in docs] == [d.text for d in sentences] and len(docs) == 2
    assert [[(e.text, e.label_) for e in d.ents] for d in docs] == [
        [(e.text, e.label_) for e in d.ents] for d in sentences
    ]


def test_mixed_keeps_some_chunks_whole_and_splits_the_rest(tmp_path):
    # 40 documents of four two-token sentences, packed into chunks of two sentences
    text = "".join(
        "-DOCSTART- -X- -X- O\n\n" + "Ada NNP B-NP B-PER\nleft VBD B-VP O\n\n" * 4
        for _ in range(40)
    )
    source = Source("m/train", write(tmp_path / "m.txt", text), read_conll)
    chunks = list(source_docs(Vocab(), source, "chunk", max_tokens=4))
    mixed = list(source_docs(Vocab(), source, "mixed", max_tokens=4))
    assert len(chunks) == 80
    whole = [d for d in mixed if len(d) == 4]
    # every chunk is either kept whole or split into its two sentences
    assert len(mixed) == len(whole) + 2 * (80 - len(whole))
    assert 20 < len(whole) < 60  # about half, seeded per document
    assert [t.text for d in mixed for t in d] == [t.text for d in chunks for t in d]
    assert sum(len(d.ents) for d in mixed) == sum(len(d.ents) for d in chunks) == 160
    again = list(source_docs(Vocab(), source, "mixed", max_tokens=4))
    assert [len(d) for d in again] == [len(d) for d in mixed]


def test_mixed_converts_training_only(tmp_path):
    raw = tmp_path / "raw"
    for split in ("train", "dev", "test"):
        write(raw / f"conllpp_{split}.txt", CONLL)
    report = convert("conllpp", raw, tmp_path / "out", granularity="mixed", max_tokens=1000)
    assert report["granularity"] == "mixed" and report["chunk_share"] == 0.5
    assert report["splits"]["dev"]["samples"] == report["splits"]["test"]["samples"] == 3
    assert report["splits"]["train"]["samples"] in (2, 3, 4)  # two chunks, each whole or split
    assert report["splits"]["train"]["sentences"] == 3
    # `convert-documents` needs the test set alone, as whole documents.
    report = convert("conllpp", raw, tmp_path / "docs", "chunk", 100000, splits_wanted=["test"])
    assert list(report["splits"]) == ["test"] and report["splits"]["test"]["samples"] == 2
    assert [p.name for p in sorted((tmp_path / "docs").glob("*.spacy"))] == ["test.spacy"]


def test_stats_of_converted_docs(tmp_path):
    conll = Source("c/train", write(tmp_path / "c.txt", CONLL), read_conll)
    tsv = Source("t/train", write(tmp_path / "t.txt", TSV), read_tsv)
    stats = corpus_stats(split_docs(Vocab(), [conll, tsv], "chunk", max_tokens=6))
    assert stats["sentences"] == 5 and stats["tokens"] == 19
    assert stats["documents"] == 2  # the TSV file has no document marks
    assert stats["types"] == {
        "LOC": 2,
        "MISC": 1,
        "ORG": 1,
        "PER": 2,
        "conference": 2,
        "product": 1,
        "researcher": 1,
    }
    assert stats["mentions"] == 10 and stats["max_sentence_tokens"] == 5
    assert stats["samples"] == 5  # [5] [2] [5] [3] [4]: chunks stay inside documents
    assert corpus_stats(split_docs(Vocab(), [conll, tsv], limit=2))["samples"] == 2


def test_stats_count_a_doc_without_sentence_boundaries_as_one_sentence():
    doc = Doc(Vocab(), words=["Ada", "wrote", ".", "Then", "left"])
    stats = corpus_stats([doc])
    assert stats["sentences"] == 1 and stats["max_sentence_tokens"] == 5 and stats["tokens"] == 5


# ---------------------------------------------------------------------------
# Datasets and CLI


def test_cli_convert_conllpp(tmp_path, capsys):
    raw = tmp_path / "raw"
    for split in ("train", "dev", "test"):
        write(raw / f"conllpp_{split}.txt", CONLL)
    out = tmp_path / "corpus"
    assert main(["convert", "conllpp", str(raw), str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "dev.spacy",
        "stats.json",
        "test.spacy",
        "train.spacy",
    ]
    docs = load(out / "test.spacy")
    assert [d.text for d in docs][:2] == ["EU rejects German call .", "Peter Blackburn"]
    assert ents(docs[2]) == [(0, 1, "LOC"), (2, 4, "PER"), (4, 5, "LOC")]
    stats = srsly.read_json(out / "stats.json")
    assert stats["dataset"] == "conllpp" and stats["granularity"] == "sentence"
    assert stats["splits"]["test"]["samples"] == 3 and stats["splits"]["test"]["documents"] == 2

    assert (
        main(
            [
                "convert",
                "conllpp",
                str(raw),
                str(out),
                "--granularity",
                "chunk",
                "--max-tokens",
                "74",
            ]
        )
        == 0
    )
    assert [len(d) for d in load(out / "train.spacy")] == [7, 5]
    assert main(["convert", "conllpp", str(raw), str(out), "--limit", "1"]) == 0
    assert srsly.read_json(out / "stats.json")["splits"]["dev"]["samples"] == 1
    with pytest.raises(SystemExit):
        main(["convert", "conllpp", str(raw), str(out), "--max-tokens", "0"])


def test_bc5cdr_dev_split_is_read_from_devel(tmp_path, capsys):
    raw = tmp_path / "bc5cdr"
    write(raw / "train.tsv", "a\tB-Chemical\n\n")
    write(raw / "devel.tsv", "b\tO\nc\tB-Disease\n\n")
    write(raw / "test.tsv", "d\tO\n\n")
    assert main(["convert", "bc5cdr", str(raw), str(tmp_path / "out")]) == 0
    (dev,) = load(tmp_path / "out" / "dev.spacy")
    assert dev.text == "b c" and ents(dev) == [(1, 2, "Disease")]
    (raw / "devel.tsv").rename(raw / "dev.tsv")
    assert main(["convert", "bc5cdr", str(raw), str(tmp_path / "out2")]) == 1
    assert "devel.tsv" in capsys.readouterr().err
    assert not (tmp_path / "out2" / "train.spacy").exists()  # nothing written before the check


def make_crossner_raw(raw: Path) -> None:
    """CoNLL++ train/dev plus one sentence per domain file, labelled with the
    domain name so each split's provenance is visible in its labels."""
    write(raw / "conllpp" / "conllpp_train.txt", CONLL)
    write(raw / "conllpp" / "conllpp_dev.txt", CONLL)
    for domain in CROSSNER_DOMAINS:
        for split in ("train", "dev", "test"):
            write(raw / domain / f"{split}.txt", f"x\tB-{domain}_{split}\ny\tO\n\n")


def test_crossner_paper_setting(tmp_path):
    raw = tmp_path / "crossner"
    make_crossner_raw(raw)
    report = convert("crossner", raw, tmp_path / "out")
    splits = report["splits"]
    assert set(splits) == {"train", "dev", "test"} | {f"test_{d}" for d in CROSSNER_DOMAINS}
    train_labels = set(splits["train"]["types"])
    assert {"person", "location", "organisation", "misc"} <= train_labels
    assert not train_labels & {"PER", "LOC", "ORG", "MISC"}  # CoNLL++ is relabelled
    assert train_labels - {"person", "location", "organisation", "misc"} == {
        f"{d}_{s}" for d in CROSSNER_DOMAINS for s in ("train", "dev")
    }
    assert splits["train"]["sentences"] == 2 * 3 + 2 * len(CROSSNER_DOMAINS)
    assert (
        splits["train"]["documents"] == 4
    )  # CoNLL++ train and dev documents; domains have no marks
    assert set(splits["dev"]["types"]) == {f"{d}_dev" for d in CROSSNER_DOMAINS}
    assert set(splits["test"]["types"]) == {f"{d}_test" for d in CROSSNER_DOMAINS}
    for domain in CROSSNER_DOMAINS:
        assert splits[f"test_{domain}"]["types"] == {f"{domain}_test": 1}
        assert (tmp_path / "out" / f"test_{domain}.spacy").exists()


def to_normalised(text: str, doc_mark: str = "-DOCSTART-") -> str:
    """The MANIFEST format of a raw CoNLL/TSV text: TOKEN<TAB>TAG, `# doc` marks."""
    lines = []
    for line in text.splitlines():
        if line.startswith(doc_mark):
            lines.append("# doc")
        elif line.strip():
            columns = line.split()
            lines.append(f"{columns[0]}\t{columns[-1]}")
        else:
            lines.append("")
    return "\n".join(lines) + "\n"


def test_normalised_files_stand_in_for_missing_raw_files(tmp_path):
    """A folder in the MANIFEST layout converts to the same docs as the raw files."""
    raw, normalised = tmp_path / "raw", tmp_path / "datasets"
    make_crossner_raw(raw)
    for split in ("train", "dev"):
        write(normalised / "conllpp" / f"{split}.iob.gz", to_normalised(CONLL))
    for domain in CROSSNER_DOMAINS:
        for split in ("train", "dev", "test"):
            text = (raw / domain / f"{split}.txt").read_text()
            write(normalised / f"crossner_{domain}" / f"{split}.iob.gz", to_normalised(text))
    sources = [s for group in dataset_splits("crossner", normalised).values() for s in group]
    assert {s.reader for s in sources} == {read_iob}
    assert all(s.path.name.endswith(".iob.gz") for s in sources)
    raw_report = convert("crossner", raw, tmp_path / "from_raw")
    normalised_report = convert("crossner", normalised, tmp_path / "from_normalised")
    assert normalised_report["splits"] == raw_report["splits"]
    for split in raw_report["splits"]:
        from_raw = load(tmp_path / "from_raw" / f"{split}.spacy")
        from_normalised = load(tmp_path / "from_normalised" / f"{split}.spacy")
        assert [(d.text, ents(d), d.user_data) for d in from_normalised] == [
            (d.text, ents(d), d.user_data) for d in from_raw
        ]
    # A raw file that is present wins over its normalised copy.
    write(normalised / "conllpp_train.txt", CONLL)
    (train,) = [s for s in dataset_splits("conllpp", normalised)["train"]]
    assert train.reader is read_conll


def test_mirror_assets_falls_back_to_the_normalised_datasets(tmp_path):
    mirror_assets = load_script(REPO / "scripts" / "mirror_assets.py", "mirror_assets")
    project_dir, datasets = tmp_path / "project", tmp_path / "datasets"
    project_dir.mkdir()
    shutil.copy(REPO / "project.yml", project_dir / "project.yml")
    problems = mirror_assets.mirror_assets(project_dir, "bc5cdr", None, None, datasets)
    assert len(problems) == 3 and all("SPANDEC_DATASETS_DIR" in p for p in problems)
    for split in ("train", "dev", "test"):
        write(datasets / "bc5cdr" / f"{split}.iob.gz", f"a{split}\tB-Chemical\nb\tO\n\n")
    assert mirror_assets.mirror_assets(project_dir, "bc5cdr", None, None, datasets) == []
    report = convert("bc5cdr", project_dir / "assets" / "bc5cdr", tmp_path / "out")
    assert report["sources"]["dev"] == ["bc5cdr/dev"]
    (dev,) = load(tmp_path / "out" / "dev.spacy")
    assert dev.text == "adev b" and ents(dev) == [(0, 1, "Chemical")]


def test_unknown_dataset_and_missing_files(tmp_path):
    with pytest.raises(ValueError, match="Unknown dataset"):
        dataset_splits("conll2003", tmp_path)
    with pytest.raises(FileNotFoundError, match="conllpp_train.txt"):
        convert("conllpp", tmp_path, tmp_path / "out")


def test_project_assets_cover_converter_layout():
    assets = srsly.read_yaml(REPO / "project.yml")["assets"]
    dests = {a["dest"] for a in assets}
    for dataset in corpus.DATASETS:
        raw = Path("assets") / dataset
        needed = {str(s.path) for group in dataset_splits(dataset, raw).values() for s in group}
        assert needed <= dests, f"{dataset}: {sorted(needed - dests)} not declared in project.yml"
    for asset in assets:
        assert asset.get("url") or asset["dest"].startswith("assets/ontonotes5/")


# ---------------------------------------------------------------------------
# Real data (skipped without the team's shared datasets)


def find_mirror() -> Path:
    env = os.environ.get("SPANDEC_DATA_MIRROR")
    mirror = Path(env) if env else REPO.parent / "shared" / "datasets" / "upstream"
    if not mirror.is_absolute() and not mirror.exists():
        mirror = REPO / mirror  # relative to the project, as `spacy project run` sees it
    if (mirror / "upstream").is_dir():
        mirror = mirror / "upstream"
    return mirror


MIRROR = find_mirror()
DATASETS_DIR = Path(os.environ.get("SPANDEC_DATASETS_DIR") or MIRROR.parent)
needs_data = pytest.mark.skipif(
    not (MIRROR.is_dir() or (DATASETS_DIR / "conllpp").is_dir()),
    reason=f"no shared datasets at {MIRROR} or {DATASETS_DIR} (set SPANDEC_DATA_MIRROR or SPANDEC_DATASETS_DIR)",
)
needs_mirror = pytest.mark.skipif(
    not MIRROR.is_dir(), reason=f"no raw-data mirror at {MIRROR} (set SPANDEC_DATA_MIRROR)"
)


def load_script(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def expected() -> Dict[str, dict]:
    if not (DATASETS_DIR / "verify.py").is_file():
        pytest.skip(f"no verify.py (the MANIFEST statistics) in {DATASETS_DIR}")
    return load_script(DATASETS_DIR / "verify.py", "shared_verify").EXPECTED


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A project dir whose assets/ is filled by scripts/mirror_assets.py, from
    the raw mirror where there is one, else from the normalised files."""
    project_dir = tmp_path_factory.mktemp("project")
    shutil.copy(REPO / "project.yml", project_dir / "project.yml")
    mirror_assets = load_script(REPO / "scripts" / "mirror_assets.py", "mirror_assets")
    for dataset in ("conllpp", "bc5cdr", "crossner"):
        mirror = MIRROR if MIRROR.is_dir() else None
        assert mirror_assets.mirror_assets(project_dir, dataset, mirror, None, DATASETS_DIR) == []
    return project_dir


def assert_matches_manifest(stats: dict, expected: dict) -> None:
    keys = ("sentences", "documents", "tokens", "mentions", "types")  # the keys verify.py records
    assert {k: stats[k] for k in keys} == {k: expected[k] for k in keys}


@needs_data
@pytest.mark.parametrize("dataset", ["conllpp", "bc5cdr"])
def test_real_statistics_match_manifest(project, expected, dataset):
    measured = source_stats(dataset, project / "assets" / dataset)
    assert sorted(measured) == [f"{dataset}/{s}" for s in ("dev", "test", "train")]
    for name, stats in measured.items():
        assert_matches_manifest(stats, expected[f"{name}.iob.gz"])


@needs_data
def test_real_conllpp_chunks(project, tmp_path):
    report = convert(
        "conllpp", project / "assets" / "conllpp", tmp_path, granularity="chunk", max_tokens=74
    )
    samples = {split: stats["samples"] for split, stats in report["splits"].items()}
    assert samples["test"] == 819
    assert samples["train"] + samples["dev"] == 4506
    assert (
        report["splits"]["test"]["documents"] == 231
        and report["splits"]["test"]["sentences"] == 3453
    )
    assert len(DocBin().from_disk(tmp_path / "test.spacy")) == 819


@needs_data
def test_real_crossner_splits(project, expected, tmp_path):
    splits = convert("crossner", project / "assets" / "crossner", tmp_path)["splits"]
    # CoNLL++ train+dev (17,291 / 254,983) + five domains' train+dev (2,821 / 108,733): MANIFEST.md
    assert (
        splits["train"]["sentences"],
        splits["train"]["tokens"],
        splits["train"]["documents"],
    ) == (20112, 363716, 1162)
    assert len(splits["train"]["types"]) == 39
    assert (splits["test"]["sentences"], splits["test"]["tokens"]) == (2506, 95825)
    assert splits["dev"]["sentences"] == sum(
        expected[f"crossner_{d}/dev.iob.gz"]["sentences"] for d in CROSSNER_DOMAINS
    )
    for domain in CROSSNER_DOMAINS:
        assert_matches_manifest(
            splits[f"test_{domain}"], expected[f"crossner_{domain}/test.iob.gz"]
        )


@needs_data
def test_real_ontonotes_test_normalised_format(expected):
    path = DATASETS_DIR / "ontonotes5" / "test.iob.gz"
    if not path.is_file():
        pytest.skip("no normalised OntoNotes copy")
    stats = corpus_stats(source_docs(Vocab(), Source("ontonotes5/test", path, read_iob)))
    assert_matches_manifest(stats, expected["ontonotes5/test.iob.gz"])


@needs_mirror
def test_mirror_files_match_project_checksums():
    mirror_assets = load_script(REPO / "scripts" / "mirror_assets.py", "mirror_assets")
    for asset in srsly.read_yaml(REPO / "project.yml")["assets"]:
        if asset.get("url"):
            data = (MIRROR / mirror_assets.mirror_relpath(asset["url"])).read_bytes()
            assert hashlib.md5(data).hexdigest() == asset["checksum"], asset["dest"]
            assert hashlib.sha256(data).hexdigest() == asset["sha256"], asset["dest"]
