"""Tests of the custom-data converter (spacy_spandec/custom_data.py).

A JSONL file with one of each bad annotation must be reported line by line
with the right counts while the DocBin keeps exactly the good spans; the IOB
and DocBin readers convert tiny files; unusable data fails with a clear
message and writes no corpus.
"""

import json
from pathlib import Path
from typing import Any, Dict, List, Tuple

import pytest
import spacy
import srsly
from spacy.tokens import DocBin, Span
from spacy.vocab import Vocab

from spacy_spandec.corpus import DOC_ID_KEY
from spacy_spandec.custom_data import (
    OVERLAP_RULE,
    Options,
    UnusableData,
    convert_custom,
    detect_format,
    main,
)


def span(text: str, sub: str, label: str) -> Dict[str, Any]:
    start = text.index(sub)
    return {"start": start, "end": start + len(sub), "label": label}


def record(text: str, *spans: Tuple[str, str], **extra: Any) -> str:
    return json.dumps(
        {"text": text, "spans": [span(text, sub, label) for sub, label in spans], **extra}
    )


NAACP = "the National Association for the Advancement of Colored People"  # 9 tokens
YORK = "I flew to New York-based Acme."
# Line numbers matter: the report must name them. Line 4 is blank.
LINES = [
    record(
        "Angela Merkel met Emmanuel Macron in Berlin.",
        ("Angela Merkel", "PER"),
        ("Emmanuel Macron", "PER"),
        ("Berlin", "LOC"),
    ),  # 1 good
    json.dumps(
        {
            "text": "Apple opened a store in Paris.",
            "spans": [
                {"start": 0, "end": 5, "label": "ORG"},
                {"start": 24, "end": 40, "label": "LOC"},
            ],
        }
    ),  # 2 outside
    json.dumps(
        {
            "text": "Siemens hired Jo Smith.",
            "spans": [
                {"start": 1, "end": 7, "label": "ORG"},
                {"start": 14, "end": 22, "label": "PER"},
            ],
        }
    ),  # 3 misaligned
    "",
    record(
        "The University of California at Berkeley is big.",
        ("University of California at Berkeley", "ORG"),
        ("Berkeley", "LOC"),
    ),  # 5 overlap
    record("Bob lives in Rome.", ("Bob", ""), ("Rome", "LOC")),  # 6 empty label
    record(f"He joined {NAACP} in 1950.", (NAACP, "ORG")),  # 7 too long
    '{"text": "broken", "spans": [',  # 8 not JSON
    record("Rome is in Italy.", ("Rome", "LOC"), ("Italy", "LOC"), ("Italy", "LOC")),  # 9 duplicate
    record("Rejected text about Oslo.", ("Oslo", "LOC"), answer="reject"),  # 10 rejected
    record(
        YORK,
        ("Acme", "ORG"),
        ("New York", "LOC"),  # 11 own tokens
        tokens=[{"text": w} for w in ["I", "flew", "to", "New", "York-based", "Acme", "."]],
    ),
    record(
        "Hello Paris", ("Paris", "LOC"), tokens=[{"text": "Hello"}, {"text": "Pari"}]
    ),  # 12 bad tokens
    json.dumps(
        {
            "text": "Ada Lovelace wrote.",
            "spans": [
                {"start": "0", "end": 3, "label": "PER"},
                {"start": 0, "end": 12, "label": "PER"},
            ],
        }
    ),  # 13 bad offsets
    json.dumps(
        {"text": "Visit  Oslo now", "spans": [{"start": 5, "end": 11, "label": "LOC"}]}
    ),  # 14 whitespace
]
EXPECTED_PROBLEMS = [
    (2, "outside_text", "dropped"),
    (3, "misaligned", "dropped"),
    (5, "overlap", "dropped"),
    (6, "empty_label", "dropped"),
    (7, "too_long", "kept"),
    (8, "invalid_record", "record skipped"),
    (9, "duplicate", "dropped"),
    (10, "rejected", "record skipped"),
    (11, "misaligned", "dropped"),
    (12, "tokens_mismatch", "kept"),
    (13, "invalid_span", "dropped"),
    (14, "whitespace", "trimmed"),
]
GOOD_SPANS = [
    [("Angela Merkel", "PER"), ("Emmanuel Macron", "PER"), ("Berlin", "LOC")],
    [("Apple", "ORG")],
    [("Jo Smith", "PER")],
    [("University of California at Berkeley", "ORG")],
    [("Rome", "LOC")],
    [(NAACP, "ORG")],
    [("Rome", "LOC"), ("Italy", "LOC")],
    [("Acme", "ORG")],
    [("Paris", "LOC")],
    [("Ada Lovelace", "PER")],
    [("Oslo", "LOC")],
]

IOB = """-DOCSTART- -X- -X- O

EU NNP B-NP B-ORG
rejects VBZ B-VP O
German JJ B-NP B-MISC
call NN I-NP O

Peter\tB-PER
Blackburn\tI-PER
visited\tO
Paris\tX-LOC
today\tB-
"""


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def load(path: Path) -> list:
    return list(DocBin().from_disk(path).get_docs(Vocab()))


def ents(doc) -> List[Tuple[str, str]]:
    return [(e.text, e.label_) for e in doc.ents]


def problems(report: Dict[str, Any], split: str) -> List[Tuple[Any, str, str]]:
    return [
        (p["line"] if p["line"] is not None else p["doc_index"], p["kind"], p["action"])
        for p in report["problems"][split]
    ]


def test_jsonl_reports_each_bad_annotation_by_line_and_keeps_exactly_the_good_spans(
    tmp_path, capsys
):
    train = write(tmp_path / "train.jsonl", "\n".join(LINES) + "\n")
    dev = write(tmp_path / "dev.jsonl", LINES[0] + "\n")
    out = tmp_path / "custom"
    assert main([str(train), str(dev), str(out)]) == 0

    report = srsly.read_json(out / "conversion_report.json")
    assert problems(report, "train") == EXPECTED_PROBLEMS
    counts = report["splits"]["train"]
    assert (counts["records"], counts["docs"]) == (13, 11)
    assert counts["spans"] == {"LOC": 6, "ORG": 4, "PER": 4} and counts["spans_total"] == 14
    assert counts["spans_lost"] == {
        "duplicate": 1,
        "empty_label": 1,
        "invalid_span": 1,
        "misaligned": 2,
        "outside_text": 1,
        "overlap": 1,
    }
    assert counts["records_skipped"] == {"invalid_record": 1, "rejected": 1}
    assert (
        counts["spans_too_long_kept"] == 1
        and counts["spans_snapped"] == 0
        and counts["spans_trimmed"] == 1
    )
    assert [ents(doc) for doc in load(out / "train.spacy")] == GOOD_SPANS

    by_line = {p["line"]: p["message"] for p in report["problems"]["train"]}
    assert (
        "expand gives ORG 'Siemens' [0, 7)" in by_line[3] and "contract gives no span" in by_line[3]
    )
    assert "LOC 'Berkeley'" in by_line[5] and "(longer)" in by_line[5]
    assert "9 tokens, more than max_span_length 8" in by_line[7]
    assert "expand gives LOC 'New York-based'" in by_line[11]  # the record's own tokens were used
    printed = capsys.readouterr().out
    assert f"{train}:3: misaligned:" in printed and f"{train}:8: invalid_record:" in printed
    assert (
        "spans lost 7 (duplicate 1, empty_label 1, invalid_span 1, misaligned 2, outside_text 1, overlap 1)"
        in printed
    )
    assert OVERLAP_RULE in printed


def test_no_test_file_evaluates_dev_and_says_so(tmp_path, capsys):
    train = write(tmp_path / "train.jsonl", LINES[0] + "\n")
    dev = write(tmp_path / "dev.jsonl", LINES[8] + "\n")
    report = convert_custom(train, dev, None, tmp_path / "custom")
    assert report["evaluated_on"] == "dev"
    assert any("test.spacy holds the dev docs" in w for w in report["warnings"])
    assert [ents(d) for d in load(tmp_path / "custom" / "test.spacy")] == [
        [("Rome", "LOC"), ("Italy", "LOC")]
    ]
    assert not any("train lacks" in w for w in report["warnings"])  # LOC is in train
    stats = srsly.read_json(tmp_path / "custom" / "stats.json")
    assert stats["splits"]["test"]["mentions"] == 2 and stats["splits"]["train"]["sentences"] == 1
    assert "evaluated on: dev" in capsys.readouterr().out

    report = convert_custom(train, dev, train, tmp_path / "custom")
    assert report["evaluated_on"] == "test" and not report["warnings"]
    assert [ents(d) for d in load(tmp_path / "custom" / "test.spacy")] == [GOOD_SPANS[0]]


def test_labels_missing_from_train_are_warned_about(tmp_path):
    train = write(tmp_path / "train.jsonl", LINES[0] + "\n")
    dev = write(tmp_path / "dev.jsonl", record("Acme hired Bob.", ("Acme", "ORG")) + "\n")
    report = convert_custom(train, dev, train, tmp_path / "custom")
    assert report["warnings"] == [
        "dev has labels that train lacks, which the model cannot predict: ORG"
    ]


@pytest.mark.parametrize(
    "mode,expected,action",
    [
        ("expand", [("Siemens", "ORG"), ("Jo Smith", "PER")], "snapped"),
        ("contract", [("Jo Smith", "PER")], "dropped"),  # 'iemens' contracts to no token
    ],
)
def test_alignment_modes_snap_and_report(tmp_path, mode, expected, action):
    train = write(tmp_path / "train.jsonl", LINES[2] + "\n")
    report = convert_custom(
        train, train, None, tmp_path / "custom", options=Options(alignment_mode=mode)
    )
    assert [ents(d) for d in load(tmp_path / "custom" / "train.spacy")] == [expected]
    assert problems(report, "train") == [(1, "misaligned", action)]
    assert report["splits"]["train"]["spans_snapped"] == (1 if action == "snapped" else 0)


def test_iob_file_converts_with_bad_tags_reported_by_line(tmp_path):
    train = write(tmp_path / "train.conll", IOB)
    report = convert_custom(
        train, train, None, tmp_path / "custom", options=Options(max_span_length=1)
    )
    docs = load(tmp_path / "custom" / "train.spacy")
    assert [d.text for d in docs] == [
        "EU rejects German call",
        "Peter Blackburn visited Paris today",
    ]
    assert [ents(d) for d in docs] == [
        [("EU", "ORG"), ("German", "MISC")],
        [("Peter Blackburn", "PER")],
    ]
    assert problems(report, "train") == [
        (11, "invalid_tag", "dropped"),
        (12, "empty_label", "dropped"),
        (8, "too_long", "kept"),
    ]
    assert report["splits"]["train"]["format"] == "iob"
    assert docs[0].user_data[DOC_ID_KEY] == f"{train}#0"


def test_docbin_ents_and_spans_key(tmp_path):
    nlp = spacy.blank("en")
    first = nlp("Angela Merkel visited Paris")
    first.ents = [Span(first, 0, 2, "PER"), Span(first, 3, 4, "LOC")]
    first.spans["sc"] = [Span(first, 0, 2, "PER"), Span(first, 1, 2, "PER"), Span(first, 3, 4, "")]
    second = nlp("Nothing here")
    third = nlp("In  Oslo")  # a whitespace token between "In" and "Oslo"
    third.spans["sc"] = [Span(third, 1, 3, "LOC")]
    path = tmp_path / "train.spacy"
    DocBin(docs=[first, second, third], store_user_data=True).to_disk(path)

    convert_custom(path, path, None, tmp_path / "ents")
    assert [ents(d) for d in load(tmp_path / "ents" / "train.spacy")] == [
        [("Angela Merkel", "PER"), ("Paris", "LOC")],
        [],
        [],
    ]

    report = convert_custom(
        path, path, None, tmp_path / "custom_sc", options=Options(spans_key="sc")
    )
    assert [ents(d) for d in load(tmp_path / "custom_sc" / "train.spacy")] == [
        [("Angela Merkel", "PER")],
        [("Oslo", "LOC")],
    ]
    assert problems(report, "train") == [
        (0, "empty_label", "dropped"),
        (0, "overlap", "dropped"),
        (1, "missing_spans_key", "record skipped"),
        (2, "whitespace", "trimmed"),
    ]


def test_format_detection_and_override(tmp_path):
    jsonl = write(tmp_path / "data.records", LINES[0] + "\n")
    iob = write(tmp_path / "data.words", "EU B-ORG\n")
    docbin = tmp_path / "data.bin"
    DocBin(docs=[spacy.blank("en")("x")]).to_disk(docbin)
    assert [detect_format(p)[0] for p in (jsonl, iob, docbin)] == ["jsonl", "iob", "spacy"]
    assert detect_format(tmp_path / "x.iob.gz") == ("iob", "extension .iob")

    misnamed = write(tmp_path / "train.txt", LINES[0] + "\n")  # JSONL behind an IOB extension
    assert main([str(misnamed), str(misnamed), str(tmp_path / "forced"), "--format", "jsonl"]) == 0
    assert [ents(d) for d in load(tmp_path / "forced" / "train.spacy")] == [GOOD_SPANS[0]]


def test_unusable_data_fails_clearly_and_writes_no_corpus(tmp_path, capsys):
    good = write(tmp_path / "good.jsonl", LINES[0] + "\n")
    broken = write(
        tmp_path / "broken.jsonl", "not json\n" + json.dumps({"text": "   ", "spans": []}) + "\n"
    )
    assert main([str(broken), str(good), str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert f"train ({broken}): no usable doc among 2 records" in err
    assert not (tmp_path / "out" / "train.spacy").exists()
    assert srsly.read_json(tmp_path / "out" / "conversion_report.json")["errors"]

    no_spans = write(
        tmp_path / "no_spans.jsonl", json.dumps({"text": "Just text.", "spans": []}) + "\n"
    )
    with pytest.raises(UnusableData, match="no entity span is left"):
        convert_custom(no_spans, good, None, tmp_path / "out")

    fake = write(tmp_path / "fake.spacy", "hello")
    assert main([str(good), str(fake), str(tmp_path / "out")]) == 1
    assert "fake.spacy: not a spaCy DocBin" in capsys.readouterr().err

    bad_iob = write(tmp_path / "bad.conll", "EU B-ORG\nlonely\n")
    with pytest.raises(UnusableData, match=r"bad\.conll:2"):
        convert_custom(bad_iob, good, None, tmp_path / "out")

    assert main([str(tmp_path / "missing.jsonl"), str(good), str(tmp_path / "out")]) == 1
    assert "missing.jsonl" in capsys.readouterr().err


def test_benchmark_run_names_are_refused(tmp_path):
    good = write(tmp_path / "good.jsonl", LINES[0] + "\n")
    for name in ("conllpp", "bc5cdr_chunk74"):
        with pytest.raises(UnusableData, match="--vars.dataset custom"):
            convert_custom(good, good, None, tmp_path / name)
    assert not (tmp_path / "conllpp").exists()


def test_cli_needs_two_or_three_inputs_and_an_output(tmp_path):
    with pytest.raises(SystemExit):
        main([str(tmp_path / "a.jsonl"), str(tmp_path / "out")])
