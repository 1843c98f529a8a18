"""`python -m spacy_spandec annotate`: formats, bad records, order, shards
that resume, a killed run, n_process, as users call it (the CLI in a fresh
process at torch's default threads) and in-process for the details."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import spacy
from spacy.tokens import DocBin

from conftest import TRAIN_DATA
from spacy_spandec.annotate import annotate
from test_default_threads import fresh_env

TEXTS = [text for text, _ in TRAIN_DATA]


def read_jsonl(paths) -> list:
    return [
        json.loads(line) for path in sorted(paths) for line in Path(path).read_text().splitlines()
    ]


def annotations(out: Path) -> list:
    files = sorted(out.glob("annotations-*"))
    if files and files[0].suffix == ".parquet":
        return [row for f in files for row in pq.read_table(f).to_pylist()]
    return read_jsonl(files)


def errors(out: Path) -> list:
    return read_jsonl(out.glob("errors-*.jsonl"))


def expected(nlp, text: str) -> dict:
    """What nlp() gives for a text, in the annotate record layout."""
    doc = nlp(text)
    group = doc.spans["spandec"]
    spans = [
        {
            "start_char": s.start_char,
            "end_char": s.end_char,
            "label": s.label_,
            "score": float(score),
        }
        for s, score in zip(group, group.attrs["scores"])
    ]
    by_span = {(s["start_char"], s["end_char"], s["label"]): s["score"] for s in spans}
    ents = [
        {
            "start_char": e.start_char,
            "end_char": e.end_char,
            "label": e.label_,
            "score": by_span[(e.start_char, e.end_char, e.label_)],
        }
        for e in doc.ents
    ]
    return {"ents": ents, "spans": spans}


def assert_same_annotations(rows: list, reference: list, atol: float = 1e-5) -> None:
    """Same fields and spans; scores equal up to float rounding."""
    assert len(rows) == len(reference)
    for row, ref in zip(rows, reference):
        assert {k: v for k, v in row.items() if k not in ("ents", "spans")} == {
            k: v for k, v in ref.items() if k not in ("ents", "spans")
        }
        for key in ("ents", "spans"):
            assert [(s["start_char"], s["end_char"], s["label"]) for s in row[key]] == [
                (s["start_char"], s["end_char"], s["label"]) for s in ref[key]
            ], row
            assert all(abs(a["score"] - b["score"]) <= atol for a, b in zip(row[key], ref[key])), (
                row
            )


@pytest.fixture(scope="module")
def loaded(trained_dir):
    return spacy.load(trained_dir)


def write_jsonl_with_bad_records(path: Path) -> list:
    """Good records with extra fields, and one of each kind of bad record;
    returns (line, reason fragment) of the bad ones."""
    lines = [
        json.dumps({"id": i, "text": t, "meta": {"n": i}}).encode() for i, t in enumerate(TEXTS[:6])
    ]
    bad = [
        (b'{"id": 100, "text": "Berlin', "invalid JSON"),
        (b'{"id": 101, "body": "no text field"}', "no 'text' field"),
        (b'{"id": 102, "text": 42}', "not a string"),
        (b"", "empty line"),
        (b'{"id": 103, "text": "M\xfcnchen"}', "undecodable bytes"),
        (b"[1, 2]", "expected a JSON object"),
    ]
    out, reasons = [], []
    for i, line in enumerate(lines):
        out.append(line)
        if i < len(bad):
            out.append(bad[i][0])
            reasons.append((len(out), bad[i][1]))
    path.write_bytes(b"\n".join(out) + b"\n")
    return reasons


def test_jsonl_records_pass_through_in_order_and_bad_ones_go_to_the_errors_file(
    loaded, trained_dir, tmp_path
):
    src = tmp_path / "in.jsonl"
    reasons = write_jsonl_with_bad_records(src)
    summary = annotate(str(trained_dir), str(src), tmp_path / "out", shard_size=4, progress=False)
    rows = annotations(tmp_path / "out")
    assert [r["id"] for r in rows] == list(range(6))
    assert [r["meta"] for r in rows] == [{"n": i} for i in range(6)]
    assert_same_annotations(
        rows,
        [
            {"id": i, "text": t, "meta": {"n": i}, **expected(loaded, t)}
            for i, t in enumerate(TEXTS[:6])
        ],
    )
    assert sum(len(r["ents"]) for r in rows) > 5
    for row in rows:
        for span in row["ents"] + row["spans"]:
            assert 0 <= span["start_char"] < span["end_char"] <= len(row["text"])
    errs = errors(tmp_path / "out")
    assert [(e["line"], e["source"]) for e in errs] == [(line, str(src)) for line, _ in reasons]
    for err, (_, fragment) in zip(errs, reasons):
        assert fragment in err["error"]
    assert summary["records"] == 12 == summary["annotated"] + summary["failed"]
    assert summary["failed"] == 6 and summary["entities"] == sum(len(r["ents"]) for r in rows)
    assert len(list((tmp_path / "out").glob("annotations-*.jsonl"))) == 3


def test_every_input_format_and_parquet_output(loaded, trained_dir, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.txt").write_text("\n".join(TEXTS[:3]) + "\n", encoding="utf8")
    pq.write_table(
        pa.Table.from_pylist([{"body": t, "n": i} for i, t in enumerate(TEXTS[3:6])]),
        data / "b.parquet",
    )
    DocBin(docs=[loaded.make_doc(t) for t in TEXTS[6:8]]).to_disk(data / "c.spacy")
    (data / "d.jsonl").write_text(
        "".join(json.dumps({"body": t}) + "\n" for t in TEXTS[8:10]), encoding="utf8"
    )
    out = tmp_path / "out"
    summary = annotate(
        str(trained_dir), str(data), out, fmt="parquet", text_field="body", progress=False
    )
    assert summary["records"] == 10 and summary["failed"] == 0
    rows = annotations(out)
    assert [r["body"] for r in rows] == TEXTS[:10]
    assert [r["n"] for r in rows[3:6]] == [0, 1, 2]
    assert_same_annotations(
        [{"body": r["body"], "ents": r["ents"], "spans": r["spans"]} for r in rows],
        [{"body": t, **expected(loaded, t)} for t in TEXTS[:10]],
    )
    glob_out = tmp_path / "glob"
    annotate(str(trained_dir), str(data / "*.txt"), glob_out, progress=False)
    assert [r["text"] for r in annotations(glob_out)] == TEXTS[:3]


def test_rerun_skips_finished_shards_and_redoes_a_missing_one(trained_dir, tmp_path):
    src = tmp_path / "in.txt"
    src.write_text("\n".join(TEXTS) + "\n", encoding="utf8")
    out = tmp_path / "out"
    annotate(str(trained_dir), str(src), out, shard_size=5, progress=False)
    first = annotations(out)
    shards = sorted(out.glob("annotations-*.jsonl"))
    shards[1].unlink()
    stamp = shards[0].stat().st_mtime_ns
    summary = annotate(str(trained_dir), str(src), out, shard_size=5, progress=False)
    assert summary["skipped_shards"] == len(shards) - 1
    assert shards[0].stat().st_mtime_ns == stamp
    assert annotations(out) == first
    with pytest.raises(ValueError, match="shard_size"):
        annotate(str(trained_dir), str(src), out, shard_size=7, progress=False)


def test_text_over_max_length_is_an_error_record_not_a_crash(trained_dir, tmp_path):
    src = tmp_path / "in.jsonl"
    long_text = "Berlin " * 150_000  # over spaCy's default nlp.max_length of 1,000,000 characters
    src.write_text(json.dumps({"text": long_text}) + "\n" + json.dumps({"text": TEXTS[0]}) + "\n")
    summary = annotate(str(trained_dir), str(src), tmp_path / "out", progress=False)
    assert summary["failed"] == 1 and summary["annotated"] == 1
    assert "nlp.max_length" in errors(tmp_path / "out")[0]["error"]


def cli(*args: str) -> list:
    return [sys.executable, "-m", "spacy_spandec", "annotate", *map(str, args), "--no-progress"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "in.jsonl"
    texts = [t for _ in range(20) for t in TEXTS]
    path.write_text(
        "".join(json.dumps({"i": i, "text": t}) + "\n" for i, t in enumerate(texts)),
        encoding="utf8",
    )
    return path


@pytest.fixture(scope="module")
def reference(trained_dir, corpus, tmp_path_factory) -> list:
    out = tmp_path_factory.mktemp("reference") / "out"
    proc = subprocess.run(
        cli(trained_dir, corpus, out, "--shard-size", "50"),
        env=fresh_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "annotated" in proc.stdout and "0 failed" in proc.stdout
    return annotations(out)


def test_cli_n_process_2_gives_the_single_process_output(
    loaded, trained_dir, corpus, reference, tmp_path
):
    # The CLI at torch's default threads gives what nlp() gives.
    texts = [json.loads(line) for line in corpus.read_text().splitlines()]
    assert_same_annotations(reference, [{**t, **expected(loaded, t["text"])} for t in texts])
    out = tmp_path / "out"
    proc = subprocess.run(
        cli(trained_dir, corpus, out, "--shard-size", "50", "--n-process", "2"),
        env=fresh_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert_same_annotations(annotations(out), reference)


def test_a_killed_run_resumes_and_loses_at_most_the_shard_in_progress(
    trained_dir, corpus, reference, tmp_path
):
    out = tmp_path / "out"
    args = cli(trained_dir, corpus, out, "--shard-size", "50")
    proc = subprocess.Popen(
        args, env=fresh_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 300
    while (
        time.time() < deadline and proc.poll() is None and not list(out.glob("annotations-*.jsonl"))
    ):
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = sorted(out.glob("annotations-*.jsonl"))
    assert 1 <= len(done) < len(reference) // 50
    for path in done:  # finished shards are whole
        assert len(path.read_text().splitlines()) == 50
    proc = subprocess.run(args, env=fresh_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"{len(done)} shard(s) done before" in proc.stdout
    assert_same_annotations(annotations(out), reference)


@pytest.mark.slow
def test_ray_engine_with_two_workers_gives_the_local_output_and_errors(trained_dir, tmp_path):
    """A local Ray instance, as `--engine ray` starts it (about a minute on
    2 cores: Ray Data starts its own actors)."""
    pytest.importorskip("ray.data")
    src = tmp_path / "in.jsonl"
    write_jsonl_with_bad_records(src)
    local, remote = tmp_path / "local", tmp_path / "ray"
    annotate(str(trained_dir), str(src), local, shard_size=4, progress=False)
    args = cli(trained_dir, src, remote, "--shard-size", "4", "--engine", "ray", "--workers", "2")
    proc = subprocess.run(args, env=fresh_env(), capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert "12 records = 6 annotated + 6 failed" in proc.stdout
    assert_same_annotations(annotations(remote), annotations(local))
    assert errors(remote) == errors(local) and len(errors(local)) == 6
    shards = sorted(remote.glob("annotations-*.jsonl"))
    shards[-1].unlink()  # a rerun does only the missing shard
    summary = annotate(
        str(trained_dir), str(src), remote, shard_size=4, progress=False, engine="ray", workers=2
    )
    assert summary["skipped_shards"] == len(shards) - 1 and summary["records"] == 12
    assert_same_annotations(annotations(remote), annotations(local))
    shards[-1].unlink()
    # More CPUs than the local instance has: a clear error, not actors waiting forever.
    with pytest.raises(ValueError, match="--cpus-per-worker"):
        annotate(
            str(trained_dir),
            str(src),
            remote,
            shard_size=4,
            progress=False,
            engine="ray",
            workers=2,
            cpus_per_worker=1000.0,
        )


@pytest.mark.parametrize("cpus", [0.0, -1.0])
def test_cpus_per_worker_must_be_positive(trained_dir, tmp_path, cpus):
    src = tmp_path / "in.txt"
    src.write_text(TEXTS[0] + "\n", encoding="utf8")
    with pytest.raises(ValueError, match="--cpus-per-worker must be > 0"):
        annotate(str(trained_dir), str(src), tmp_path / "out", engine="ray", cpus_per_worker=cpus)
