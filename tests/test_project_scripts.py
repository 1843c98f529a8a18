"""scripts/run_all.py, results_table.py and readme_results.py: budgets, run folders, tables."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

import convergence_curves  # noqa: E402
import decoding_report  # noqa: E402
import package_meta  # noqa: E402
import readme_results  # noqa: E402
import results_table  # noqa: E402
import run_all  # noqa: E402


def write_stats(root: Path, run: str, samples: int, sentences: int) -> None:
    path = root / "corpus" / run / "stats.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"splits": {"train": {"samples": samples, "sentences": sentences}}}))


def write_config(root: Path, batcher: dict) -> None:
    """A configs/spandec.cfg that reads a train corpus with spaCy's English
    tokenizer and batches it with `batcher`."""
    (root / "configs").mkdir(exist_ok=True)
    (root / "configs" / "spandec.cfg").write_text(
        '[paths]\ntrain = null\n\n[nlp]\nlang = "en"\n\n[nlp.tokenizer]\n'
        '@tokenizers = "spacy.Tokenizer.v1"\n\n[corpora]\n\n[corpora.train]\n'
        '@readers = "spacy.Corpus.v1"\npath = ${paths.train}\ngold_preproc = false\n\n'
        '[training]\ntrain_corpus = "corpora.train"\n\n[training.batcher]\n'
        + "\n".join(f"{k} = {json.dumps(v)}" for k, v in batcher.items())
    )


def test_cpu_budget_covers_the_text_of_400_batches_of_32_sentences(tmp_path, monkeypatch):
    monkeypatch.setattr(run_all, "PROJECT_DIR", tmp_path)
    write_config(tmp_path, {"@batchers": "spacy.batch_by_sequence.v1", "size": 32})
    # Counted only after convert: no stats, no step count yet.
    assert run_all.max_steps("cpu", "conllpp_sentence", "spandec") is None
    write_stats(tmp_path, "conllpp_sentence", samples=14041, sentences=14041)
    assert run_all.max_steps("cpu", "conllpp_sentence", "spandec") == run_all.CPU_STEPS
    write_stats(tmp_path, "conllpp_chunk74", samples=3700, sentences=14041)
    steps = run_all.max_steps("cpu", "conllpp_chunk74", "spandec")
    assert steps == -(-run_all.CPU_STEPS * 3700 // 14041)
    assert steps * 14041 >= run_all.CPU_STEPS * 3700
    paper = run_all.max_steps("paper", "conllpp_chunk74", "spandec")
    assert paper == -(-run_all.PAPER_EPOCHS * 3700 // 32)


def test_budgets_count_the_batches_of_a_length_batcher(tmp_path, monkeypatch):
    """With spaCy's batch_by_padded a batch holds as many samples as fit its
    padded size, so the steps of an epoch are the batches it makes of the
    examples the trainer reads, which the config's tokenizer re-tokenizes
    (a stored word "a-b" is three spaCy tokens), and a mixed run's CPU budget
    covers as much text as the sentence run's."""
    from spacy.tokens import Doc, DocBin
    from spacy.util import registry
    from spacy.vocab import Vocab

    monkeypatch.setattr(run_all, "PROJECT_DIR", tmp_path)
    run_all.counted_batches.cache_clear()
    # One buffer holds the whole toy train set: the count does not depend on its order.
    batcher = {"@batchers": "spacy.batch_by_padded.v1", "size": 40, "buffer": 256}
    batcher.update(discard_oversize=False, get_length=None)
    write_config(tmp_path, batcher)
    assert run_all.max_steps("converge", "toy_mixed8_converge", "spandec") is None
    vocab = Vocab()
    docs, lengths_read = [], []
    for i in range(30):  # chunks of 2-4 sentences and single sentences, 3-9 words each
        lengths = [3 + (i * 7 + j * 5) % 7 for j in range(1 + i % 4)]
        starts = [k == 0 for n in lengths for k in range(n)]
        words = ["a-b"] * sum(lengths)
        docs.append(Doc(vocab, words=words, spaces=[True] * len(words), sent_starts=starts))
        lengths_read.append([3 * n for n in lengths])
    path = tmp_path / "corpus" / "toy_mixed8_converge" / "train.spacy"
    path.parent.mkdir(parents=True)
    DocBin(docs=docs).to_disk(path)
    n_sentences = sum(len(lengths) for lengths in lengths_read)
    write_stats(tmp_path, "toy_mixed8_converge", samples=len(docs), sentences=n_sentences)

    def batches(lengths):
        samples = [Doc(vocab, words=["x"] * n) for n in lengths]
        return len(list(registry.resolve({"b": batcher})["b"](samples)))

    per_epoch = batches([sum(lengths) for lengths in lengths_read])
    assert per_epoch != batches([len(doc) for doc in docs])  # the stored lengths differ
    converge = run_all.max_steps("converge", "toy_mixed8_converge", "spandec")
    assert converge == run_all.CONVERGE_EPOCHS * per_epoch
    misses = run_all.counted_batches.cache_info().misses
    assert run_all.max_steps("converge", "toy_mixed8_converge", "sf_spandec") == converge
    assert run_all.counted_batches.cache_info().misses == misses  # spandec's model, counted once
    # The CPU budget: the share of an epoch that 400 batches of 32 sentences read.
    cpu = run_all.max_steps("cpu", "toy_mixed8_converge", "spandec")
    assert cpu == -(-run_all.CPU_STEPS * run_all.CPU_BATCH_SENTENCES * per_epoch // n_sentences)


@pytest.mark.parametrize(
    "options,suffix,samples",
    [
        ([], None, "mixed 128"),  # project.yml's default: plain folders
        (["--granularity", "mixed", "--max-tokens", "128"], None, "mixed 128"),
        (["--granularity", "chunk"], "_chunk74", "chunk 74"),
        (["--granularity", "mixed", "--max-tokens", "64"], "_mixed64", "mixed 64"),
        (["--granularity", "sentence"], "_sentence", "sentence"),
    ],
)
def test_dry_run_puts_other_granularities_in_their_own_folders(options, suffix, samples, capsys):
    assert run_all.main(["--datasets", "conllpp", "--dry-run"] + options) == 0
    commands = [line for line in capsys.readouterr().out.splitlines() if line.startswith("$ ")]
    granularity, *max_tokens = samples.split()
    assert commands
    for command in (c + " " for c in commands):
        assert f"--vars.granularity={granularity} " in command
        assert ("--vars.max_tokens=" in command) == bool(max_tokens)
        assert all(f"--vars.max_tokens={n} " in command for n in max_tokens)
        assert ("--vars.suffix=" in command) == bool(suffix)
        assert suffix is None or f"--vars.suffix={suffix} " in command


def test_converge_budget_trains_resumably_in_its_own_folders(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(run_all, "PROJECT_DIR", tmp_path)
    stats = tmp_path / "corpus" / "bc5cdr_converge" / "stats.json"
    stats.parent.mkdir(parents=True)
    stats.write_text(json.dumps({"splits": {"train": {"samples": 4560, "sentences": 4560}}}))
    steps = run_all.max_steps("converge", "bc5cdr_converge", "spandec")
    assert steps == -(-run_all.CONVERGE_EPOCHS * 4560 // run_all.PAPER_BATCH_SAMPLES)
    assert (
        run_all.main(
            ["--datasets", "bc5cdr", "--budget", "converge", "--dry-run", "--steps", "train"]
        )
        == 0
    )
    commands = [line for line in capsys.readouterr().out.splitlines() if line.startswith("$ ")]
    assert (
        len(commands) == 3
    )  # spacy_ner, token_cls, spandec; sf_spandec is calibrated, not trained
    for command in commands:
        assert " train-resumable " in command and "--vars.suffix=_converge" in command
        assert f"--vars.max_steps={steps}" in command and "--vars.max_epochs=10" in command
        assert f"--vars.eval_frequency={steps // 20}" in command


def test_converge_curves_of_another_granularity_are_collected_from_its_own_folders(capsys):
    argv = ["--datasets", "conllpp", "--budget", "converge", "--granularity", "sentence"]
    argv += ["--dry-run", "--steps", "evaluate"]
    assert run_all.main(argv) == 0
    commands = [line for line in capsys.readouterr().out.splitlines() if line.startswith("$ ")]
    curves = [c for c in commands if " convergence-curves " in c]
    assert len(curves) == 1 and "--vars.suffix=_sentence_converge" in curves[0]


def test_results_table_has_one_row_per_run_and_model(tmp_path):
    metrics = tmp_path / "metrics"
    scores = {"seqeval_f": 0.8, "seqeval_p": 0.7, "seqeval_r": 0.9, "ents_f": 0.8}
    for run in ("conllpp_chunk74", "conllpp", "bc5cdr", "not_a_dataset"):
        (metrics / run).mkdir(parents=True)
        (metrics / run / "spandec.json").write_text(json.dumps(scores))
    timings = tmp_path / "timings.json"
    timings.write_text(
        json.dumps({"conllpp_chunk74/spandec/train": {"seconds": 12.5, "vars": {"max_steps": 105}}})
    )
    rows = results_table.collect(metrics, timings)
    assert list(rows) == ["conllpp/spandec", "conllpp_chunk74/spandec", "bc5cdr/spandec"]
    chunked = rows["conllpp_chunk74/spandec"]
    assert chunked["train_seconds"] == 12.5 and chunked["max_steps"] == 105
    assert chunked["paper_minilm_f1"] == results_table.PAPER_MINILM["spandec"]["conllpp"]
    assert rows["conllpp/spandec"]["train_seconds"] is None
    table = results_table.markdown(rows, {"machine": "m", "date": "d", "command": "c"})
    assert "| conllpp_chunk74 | SpanDec | 80.0 | 70.0 | 90.0 |  | 93.7 |" in table
    # spaCy `ner` has no paper row; whole documents sit beside the sentences.
    (metrics / "conllpp" / "spacy_ner.json").write_text(json.dumps(scores))
    (metrics / "conllpp" / "spandec_documents.json").write_text(json.dumps({"seqeval_f": 0.75}))
    rows = results_table.collect(metrics, timings)
    assert list(rows)[:2] == ["conllpp/spacy_ner", "conllpp/spandec"]
    table = results_table.markdown(rows, {"machine": "m", "date": "d", "command": "c"})
    assert "| conllpp | spaCy `ner` | 80.0 | 70.0 | 90.0 |  |  |" in table
    assert "| conllpp | SpanDec | 80.0 | 70.0 | 90.0 | 75.0 | 93.7 |" in table


def test_wall_times_sum_the_successful_steps_of_each_run(tmp_path):
    timings = tmp_path / "timings.json"
    timings.write_text(
        json.dumps(
            {
                "conllpp/-/convert": {"seconds": 10.0, "returncode": 0},
                "conllpp/spandec/train": {"seconds": 100.5, "returncode": 0},
                "conllpp/token_cls/train": {"seconds": 999.0, "returncode": 1},
                "bc5cdr/spandec/train": {"seconds": 7.0, "returncode": 0},
            }
        )
    )
    times = results_table.wall_times(timings)
    assert times == {"bc5cdr": 7.0, "conllpp": 110.5}
    table = results_table.markdown({}, {"machine": "m", "date": "d", "command": "c"}, times)
    assert "| total | 118 | 0.03 |" in table


def test_dry_run_of_one_benchmark_and_sf_variant_trains_the_model_it_calibrates(capsys):
    assert run_all.main(["--datasets", "bc5cdr", "--configs", "sf_spandec", "--dry-run"]) == 0
    commands = [line for line in capsys.readouterr().out.splitlines() if line.startswith("$ ")]
    assert commands and all("--vars.dataset=bc5cdr" in c for c in commands)
    steps = [
        (c.split()[6], next((a for a in c.split() if a.startswith("--vars.config=")), None))
        for c in commands
    ]
    assert ("train", "--vars.config=spandec") in steps
    assert ("calibrate", "--vars.config=sf_spandec") in steps
    assert steps.index(("train", "--vars.config=spandec")) < steps.index(
        ("calibrate", "--vars.config=sf_spandec")
    )
    # spandec itself is neither evaluated nor packaged: only what was asked for.
    assert not any(
        step in ("evaluate", "package") and cfg == "--vars.config=spandec" for step, cfg in steps
    )
    assert not any(cfg == "--vars.config=token_cls" for _, cfg in steps)


@pytest.mark.parametrize("dataset,documents", [("conllpp", True), ("bc5cdr", False)])
def test_benchmarks_that_mark_documents_are_also_scored_as_whole_documents(
    dataset, documents, capsys
):
    assert run_all.main(["--datasets", dataset, "--configs", "spandec", "--dry-run"]) == 0
    steps = [line.split()[6] for line in capsys.readouterr().out.splitlines() if line[:2] == "$ "]
    assert ("convert-documents" in steps) == ("evaluate-documents" in steps) == documents
    if documents:
        assert steps.index("convert") < steps.index("convert-documents") < steps.index("train")
        assert steps.index("evaluate") < steps.index("evaluate-documents")


def test_project_all_command_passes_the_benchmark_and_variant_vars():
    import srsly

    project = srsly.read_yaml(Path(__file__).resolve().parents[1] / "project.yml")
    script = next(c for c in project["commands"] if c["name"] == "all")["script"][0]
    assert "--datasets ${vars.datasets}" in script and "--configs ${vars.configs}" in script
    assert project["vars"]["datasets"] == "all" and project["vars"]["configs"] == "all"


def test_custom_workflow_reuses_the_benchmark_steps_on_the_converted_files():
    from weasel.util import load_project_config

    root = Path(__file__).resolve().parents[1]
    overrides = {
        "vars.dataset": "custom",
        "vars.train": "my_train.jsonl",
        "vars.dev": "/data/my dev.jsonl",
    }
    project = load_project_config(root, overrides=overrides)
    assert project["workflows"]["custom"] == [
        "convert-custom",
        "train",
        "calibrate",
        "evaluate",
        "package",
    ]
    convert = next(c for c in project["commands"] if c["name"] == "convert-custom")
    # Separate paths (adjacent "${...}" list items would be joined into one by the config interpolation).
    assert convert["deps"] == [
        "my_train.jsonl",
        "spacy_spandec/custom_data.py",
        "/data/my dev.jsonl",
    ]
    script = convert["script"][0]
    assert (
        '"my_train.jsonl" "/data/my dev.jsonl"  corpus/custom ' in script
    )  # no test: evaluate scores dev
    assert "corpus/custom/conversion_report.json" in convert["outputs"]


def test_package_model_card_names_custom_data_and_the_scored_split(tmp_path):
    report = tmp_path / "conversion_report.json"
    report.write_text(
        json.dumps(
            {
                "evaluated_on": "dev",
                "splits": {
                    "train": {"file": "t.jsonl", "docs": 3, "spans_total": 5},
                    "dev": {"file": "d.jsonl", "docs": 2, "spans_total": 4},
                },
            }
        )
    )
    assert package_meta.data_description("custom", report) == (
        "your own annotations: train t.jsonl (3 docs, 5 spans); dev d.jsonl (2 docs, 4 spans)",
        "dev",
    )
    assert package_meta.data_description("bc5cdr", tmp_path / "missing.json")[1] == "test"


def test_benchmark_targets_report_every_variant_and_refuse_unequal_budgets():
    import benchmark

    def row(label, docs_per_s, f1, budget="400 steps x 32 sentences"):
        return {"label": label, "budget": budget, "seqeval_f": f1, "b8": {"docs_per_s": docs_per_s}}

    models = {
        "token_cls": row("Token", 100.0, 0.80),
        "spanmarker": row("PL-Marker", 10.0, 0.30, budget="10 steps x 32 sentences"),
        "spandec": row("SpanDec", 79.0, 0.806),
        "spandec+bf16": row("SpanDec (decoder bfloat16)", 81.0, 0.805),
        "spandec+int8": row("SpanDec (decoder int8, encoder int8)", 200.0, 0.70),
        "sf_spandec": row("SF", 111.0, 0.80),
    }
    lines = benchmark.targets(models, 8)
    text = "\n".join(lines)
    assert "SpanDec / Token docs/s at batch 8: 0.79× (target ≥ 0.8×: missed)" in text
    assert (
        "SpanDec (decoder bfloat16) / Token docs/s at batch 8: 0.81× (target ≥ 0.8×: met)" in text
    )
    assert "SF / Token docs/s at batch 8: 1.11× (target ≥ 1.1×: met)" in text
    assert "encoder int8" not in text  # the reference runs a float32 encoder
    assert "SpanDec − Token F1: +0.60 (target ≥ +0.5: met)" in text
    assert "SF − SpanDec F1: -0.60 (target ≥ -0.5: missed)" in text
    assert "not comparable: trained 400 steps x 32 sentences vs 10 steps x 32 sentences" in text


def test_benchmark_train_hints_use_the_budget_of_the_compared_rows():
    """A skipped model's hint must train it at the budget the table compares
    (run_all's CPU budget, whose steps depend on the config's batcher), not at
    the train command's default."""
    import benchmark
    from run_all import CPU_STEPS

    for name in ("token_cls", "spacy_ner", "spandec", "sf_spandec"):
        hint = benchmark.train_hint(name, "bc5cdr")
        assert hint.startswith("python scripts/run_all.py --datasets bc5cdr --configs "), hint
        assert f" --configs {benchmark.MODELS[name]['config']} " in hint
        assert " train" in hint and (" calibrate" in hint) == ("spandec" in name)
        argv = hint.split("run_all.py ")[1].split() + ["--dry-run"]
        assert run_all.main(argv) == 0
    hint = benchmark.train_hint("spanmarker", "bc5cdr")  # its own trainer: steps of 32 sentences
    assert f"--max-steps {CPU_STEPS} " in hint


@pytest.mark.parametrize("dataset", ["conllpp", "bc5cdr"])
def test_benchmark_replot_redraws_table_and_plot_without_timing(dataset, tmp_path):
    """--replot rebuilds benchmark.md and the Figure-1 plot from a saved
    benchmark.json: the committed table is the one its JSON gives, and the
    plot is a PNG; no model is loaded."""
    import benchmark

    saved = Path(benchmark.PROJECT_DIR) / "results" / "benchmark" / dataset / "benchmark.json"
    benchmark.main(["--replot", str(saved), "--output", str(tmp_path)])
    result = json.loads(saved.read_text())
    assert (tmp_path / "benchmark.md").read_text() == saved.with_suffix(".md").read_text()
    for dataset in result["datasets"]:
        assert f"## {dataset}" in (tmp_path / "benchmark.md").read_text()
    assert (tmp_path / "benchmark.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_run_all_records_the_wall_time_of_the_whole_invocation(tmp_path, monkeypatch):
    calls = []

    def fake_step(step, variables, force, dry_run):
        calls.append(step)
        return {"step": step, "vars": variables, "returncode": 0, "seconds": 0.5, "skipped": False}

    monkeypatch.setattr(run_all, "run_step", fake_step)
    record = tmp_path / "run_all.json"
    args = [
        "--datasets",
        "bc5cdr",
        "--timings",
        str(tmp_path / "t.json"),
        "--run-record",
        str(record),
    ]
    assert run_all.main(args) == 0
    assert calls[:3] == ["assets", "convert", "train"] and "package" in calls
    whole = json.loads(record.read_text())
    assert whole["datasets"] == ["bc5cdr"] and whole["configs"] == run_all.CONFIGS
    assert whole["budget"] == "cpu" and whole["failed"] == []
    assert 0 <= whole["seconds"] < 60 and whole["started"] <= whole["finished"]
    times = results_table.wall_times(tmp_path / "t.json")
    assert times == {"bc5cdr": 0.5 * len(calls)}
    table = results_table.markdown({}, {"machine": "m", "date": "d", "command": "c"}, times, whole)
    assert "One uninterrupted `python scripts/run_all.py --datasets bc5cdr" in table
    assert f"{whole['seconds']:.0f} s" in table and "no step failed" in table


def test_spanmarker_trains_on_the_sentences_of_chunked_samples(tmp_path):
    """The default corpora hold chunks of several sentences; SpanMarker pads
    and truncates each sample to 128 wordpieces, so it reads sentences."""
    from spacy.tokens import Doc, DocBin, Span
    from spacy.vocab import Vocab

    import train_spanmarker

    words = ["EU", "rejects", "German", "call", ".", "Peter", "Blackburn", "spoke", "."]
    doc = Doc(Vocab(), words=words, sent_starts=[True] + [False] * 4 + [True] + [False] * 3)
    doc.ents = [Span(doc, 0, 1, "ORG"), Span(doc, 2, 3, "MISC"), Span(doc, 5, 7, "PER")]
    DocBin(docs=[doc]).to_disk(tmp_path / "train.spacy")
    rows = train_spanmarker.load_bio(tmp_path / "train.spacy")
    assert rows == [
        {"tokens": words[:5], "ner_tags": ["B-ORG", "O", "B-MISC", "O", "O"]},
        {"tokens": words[5:], "ner_tags": ["B-PER", "I-PER", "O", "O"]},
    ]
    assert train_spanmarker.load_bio(tmp_path / "train.spacy", limit=1) == rows[:1]


def test_spanmarker_training_resumes_from_the_last_complete_checkpoint(tmp_path):
    import train_spanmarker

    checkpoints = tmp_path / "checkpoints"
    assert train_spanmarker.last_checkpoint(checkpoints) is None
    for step, complete in ((25, True), (50, True), (75, False)):
        folder = checkpoints / f"checkpoint-{step}"
        folder.mkdir(parents=True)
        if complete:
            (folder / "trainer_state.json").write_text("{}")
    # checkpoint-75 was cut off mid-save (no trainer_state.json): resume from 50.
    resume = train_spanmarker.last_checkpoint(checkpoints)
    assert resume == checkpoints / "checkpoint-50"
    earlier = [
        {"from_step": 0, "to_step": 50, "started": "a", "seconds": 600.0},
        {"from_step": 50, "to_step": 75, "started": "b", "seconds": 300.0},
    ]
    (checkpoints / train_spanmarker.SEGMENTS).write_text(json.dumps(earlier))
    settings = {"dataset": "bc5cdr", "max_steps": 400}
    segments = train_spanmarker.load_segments(checkpoints, resume, settings)
    assert [(s["from_step"], s["to_step"]) for s in segments] == [(0, 50), (50, 50)]
    assert segments[0]["seconds"] == 600.0
    # A fresh start ignores records left by an earlier, finished run.
    fresh = train_spanmarker.load_segments(checkpoints, None, settings)
    assert [(s["from_step"], s["to_step"]) for s in fresh] == [(0, 0)]
    # Resuming with another budget would bend the schedule: refused, with the fix.
    earlier[0]["settings"] = settings
    (checkpoints / train_spanmarker.SEGMENTS).write_text(json.dumps(earlier))
    with pytest.raises(SystemExit, match="max_steps: 400 in the checkpoint, 80 now.*delete"):
        train_spanmarker.load_segments(checkpoints, resume, {"dataset": "bc5cdr", "max_steps": 80})
    assert len(train_spanmarker.load_segments(checkpoints, resume, settings)) == 2


def test_benchmark_reads_metrics_only_when_newer_than_the_model(tmp_path, monkeypatch):
    """PL-Marker's F1 may come from --write-metrics, written apart from the
    timing; a model retrained after its metrics must be scored again."""
    import os

    import benchmark

    monkeypatch.setattr(benchmark, "PROJECT_DIR", tmp_path)
    model = tmp_path / "training" / "bc5cdr" / "spanmarker" / "model"
    model.mkdir(parents=True)
    (model / "model.safetensors").write_bytes(b"weights")
    metrics = benchmark.metrics_path("bc5cdr", "spanmarker")
    metrics.parent.mkdir(parents=True)
    metrics.write_text(
        json.dumps({"seqeval_f": 0.71, "seqeval_p": 0.8, "seqeval_r": 0.64, "ents_f": 0.7})
    )
    runner = benchmark.Runner("spanmarker", "bc5cdr")
    os.utime(model / "model.safetensors", (2_000, 2_000))
    os.utime(metrics, (1_000, 1_000))
    assert benchmark.fresh_metrics(runner, "bc5cdr") is None
    computed = {"seqeval_f": 0.5, "seqeval_p": 0.5, "seqeval_r": 0.5, "ents_f": 0.5}
    monkeypatch.setattr(runner, "score", lambda gold: computed)
    assert benchmark.scores_of(runner, "bc5cdr", [], 0)["seqeval_f"] == 0.5
    os.utime(metrics, (3_000, 3_000))
    assert benchmark.fresh_metrics(runner, "bc5cdr") == metrics
    row = benchmark.scores_of(runner, "bc5cdr", [], 0)
    assert row["seqeval_f"] == 0.71 and row["source"] == "metrics/bc5cdr/spanmarker.json"
    # A smoke run on a test subset never takes the full-test metrics.
    assert benchmark.scores_of(runner, "bc5cdr", [], 10)["seqeval_f"] == 0.5


def test_readme_results_block_is_generated_from_the_result_files():
    """The README's numbers come from metrics/ and results/: regenerate them
    with `python scripts/readme_results.py` after a new run."""
    assert readme_results.main(["--check"]) == 0


def test_project_docs_are_generated_from_project_yml(tmp_path):
    """docs/project.md's command tables are `spacy project document`'s output
    for the current project.yml alone: regenerate them with
    `d=$(mktemp -d) && cp project.yml $d && python -m spacy project document $d --output docs/project.md`."""
    root = Path(__file__).resolve().parents[1]
    committed = (root / "docs" / "project.md").read_text()
    copy = tmp_path / "project.md"
    copy.write_text(committed)
    # project.yml alone, as in a fresh clone: `document` links the assets that
    # exist locally, so fetched assets would change the output.
    project = tmp_path / "project"
    project.mkdir()
    (project / "project.yml").write_text((root / "project.yml").read_text())
    proc = subprocess.run(
        [sys.executable, "-m", "spacy", "project", "document", str(project), "--output", str(copy)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert copy.read_text() == committed, (
        "docs/project.md is stale: regenerate it (see the docstring)"
    )


def table_rows(root: Path):
    """readme_results' block for `root`, and its table rows by their first cell."""
    block = readme_results.table(root)
    rows = {
        line.split(" | ")[0].lstrip("| "): line
        for line in block.splitlines()
        if line.startswith("| ")
    }
    return block, rows


def test_readme_results_table_reads_the_files_and_leaves_missing_cells_empty(tmp_path):
    def write(path: str, score: dict) -> None:
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(json.dumps(score))

    block, rows = table_rows(tmp_path)
    assert rows == {"test set": rows["test set"]} and "Default recipe** |" not in block
    write("metrics/bc5cdr/token_cls.json", {"seqeval_f": 0.81234})
    write("metrics/conllpp/spandec_documents.json", {"seqeval_f": 0.8})
    block, rows = table_rows(tmp_path)
    assert rows["BC5CDR, CPU budget"] == "| BC5CDR, CPU budget | – | 81.2 | – | – |"
    label = "CoNLL++ whole documents, CPU budget"
    assert rows[label] == f"| {label} | – | – | 80.0 | – |"
    assert "CoNLL++ sentences, CPU budget" not in rows  # no file: no row
    assert "Earlier recipe: sentences" not in block
    # The earlier recipe's rows, below the default's, may read a percent under a JSON path.
    write(
        "results/positions/conllpp_400.json",
        {"test": {"token_cls": {"documents": {"seqeval_f": 77.27}}}},
    )
    write(
        "results/archive/metrics_converged_sentences32/bc5cdr/sf_spandec.json",
        {"seqeval_f": 0.8512},
    )
    block, rows = table_rows(tmp_path)
    lines = block.splitlines()
    earlier = lines.index("| **Earlier recipe: sentences, batches of 32** | | | | |")
    bc5cdr = lines.index(rows["BC5CDR, CPU budget"])
    assert lines.index("| **Default recipe** | | | | |") < bc5cdr < earlier
    assert lines[earlier + 1] == "| CoNLL++ whole documents, CPU budget | – | 77.3 | – | – |"
    assert lines[earlier + 2] == "| BC5CDR, converged | – | – | – | 85.1 |"
    readme = "intro\n<!-- results:start -->\nold\n<!-- results:end -->\nrest\n"
    assert (
        readme_results.render(readme, "new")
        == "intro\n<!-- results:start -->\nnew\n<!-- results:end -->\nrest\n"
    )
    with pytest.raises(ValueError, match="exactly one"):
        readme_results.render("no markers", "new")


def test_convergence_curves_copy_every_point_and_report_words_per_second(tmp_path):
    folder = tmp_path / "training" / "bc5cdr_converge" / "spandec"
    (folder / "checkpoint").mkdir(parents=True)
    points = [
        {
            "step": 0,
            "epoch": 0,
            "epoch_end": False,
            "words": 0,
            "seconds": 1.0,
            "train_seconds": 0.0,
            "score": 0.0,
            "losses": {},
            "scores": {"ents_f": 0.01, "seqeval_f": 0.01},
        },
        {
            "step": 10,
            "epoch": 0,
            "epoch_end": True,
            "words": 500,
            "seconds": 30.0,
            "train_seconds": 20.0,
            "score": 0.6,
            "losses": {},
            "scores": {"ents_f": 0.6, "seqeval_f": 0.59},
        },
        {
            "step": 20,
            "epoch": 1,
            "epoch_end": False,
            "words": 1000,
            "seconds": 60.0,
            "train_seconds": 40.0,
            "score": 0.5,
            "losses": {},
            "scores": {"ents_f": 0.5, "seqeval_f": 0.49},
        },
    ]
    (folder / "curve.jsonl").write_text("".join(json.dumps(p) + "\n" for p in points))
    (folder / "checkpoint" / "state.json").write_text(
        json.dumps({"finished": "converged after epoch 1"})
    )
    metrics = tmp_path / "metrics" / "bc5cdr_converge"
    metrics.mkdir(parents=True)
    (metrics / "spandec.json").write_text(
        json.dumps({"seqeval_f": 0.81, "ents_f": 0.82, "token_acc": 1.0})
    )
    (metrics / "sf_spandec.json").write_text(
        json.dumps({"seqeval_f": 0.8, "spans_spandec_kept_fraction": 0.05})
    )
    result = convergence_curves.collect("bc5cdr", tmp_path)
    assert list(result["models"]) == ["spandec"]  # the other models have no curve yet
    model = result["models"]["spandec"]
    assert [p["step"] for p in model["curve"]] == [0, 10, 20]
    assert model["train_words_per_s"] == 25.0
    assert model["best_dev"] == {"step": 10, "ents_f": 0.6}
    assert model["epochs"] == 1 and model["finished"] == "converged after epoch 1"
    assert model["test"] == {"seqeval_f": 0.81, "ents_f": 0.82}
    assert model["test_sf_spandec"]["spans_spandec_kept_fraction"] == 0.05


def test_convergence_curves_of_another_granularity_read_that_run(tmp_path, monkeypatch):
    monkeypatch.setattr(convergence_curves, "PROJECT_DIR", tmp_path)
    folder = tmp_path / "training" / "conllpp_mixed128_converge" / "spandec"
    folder.mkdir(parents=True)
    point = {"step": 5, "epoch": 0, "epoch_end": True, "words": 100, "seconds": 2.0}
    point.update({"train_seconds": 1.0, "scores": {"ents_f": 0.7, "seqeval_f": 0.69}})
    (folder / "curve.jsonl").write_text(json.dumps(point) + "\n")
    assert convergence_curves.collect("conllpp", tmp_path)["models"] == {}
    for run in ("conllpp_mixed128", "conllpp_mixed128_converge"):
        result = convergence_curves.collect("conllpp", tmp_path, run=run)
        assert result["run"] == "conllpp_mixed128"
        assert result["models"]["spandec"]["train_words_per_s"] == 100.0
    argv = ["--dataset", "conllpp", "--run", "conllpp_mixed128_converge"]
    assert convergence_curves.main(argv) == 0
    saved = json.loads((tmp_path / "results/convergence/conllpp_mixed128/curves.json").read_text())
    assert saved["models"]["spandec"]["best_dev"] == {"step": 5, "ents_f": 0.7}


def test_convergence_curves_keep_a_model_whose_training_folder_is_gone():
    """A fresh checkout has no training/: the committed record of a model is
    kept, a model trained again replaces its old record."""
    fresh = {"collected": "2026-12-07", "models": {"spacy_ner": {"steps": 300, "curve": [1]}}}
    previous = {
        "collected": "2026-12-06",
        "models": {
            "spacy_ner": {"steps": 497, "curve": [0]},
            "spandec": {"steps": 857, "finished": "converged after epoch 5", "curve": [2]},
            "token_cls": {"steps": 1286, "curve": [3]},
        },
    }
    result = convergence_curves.keep_previous(fresh, previous)
    assert list(result["models"]) == ["spacy_ner", "token_cls", "spandec"]
    assert result["models"]["spacy_ner"] == {"steps": 300, "curve": [1]}
    assert result["models"]["spandec"]["collected"] == "2026-12-06"
    assert result["models"]["token_cls"]["steps"] == 1286
    again = convergence_curves.keep_previous({**fresh, "collected": "2026-12-08"}, result)
    assert again["models"]["spandec"]["collected"] == "2026-12-06"  # not re-dated


def test_decoding_report_reads_the_calibrate_and_evaluate_outputs(tmp_path):
    folder = tmp_path / "results" / "ablations" / "bc5cdr_400"
    folder.mkdir(parents=True)
    per_type = {"Chemical": {"p": 0.9, "r": 0.8, "f": 0.85}}
    (folder / "evaluate_spandec_sentences.json").write_text(
        json.dumps({"seqeval_f": 0.8, "ents_per_type": per_type})
    )
    (folder / "calibration_global_bias.json").write_text(
        json.dumps(
            {
                "outside_bias": -0.5,
                "bias_sweep": [
                    {"outside_bias": 0.0, "seqeval_f": 0.81},
                    {"outside_bias": -0.5, "seqeval_f": 0.83},
                ],
            }
        )
    )
    (folder / "evaluate_spandec_global_bias.json").write_text(
        json.dumps({"seqeval_f": 0.82, "spans_spandec_ece": 0.05, "ents_per_type": per_type})
    )
    text = decoding_report.report("bc5cdr", tmp_path)
    assert "| no offset (the default) | – | 81.00 | 80.00 | – | 90.0 / 80.0 |" in text
    assert "| global O offset | O -0.5 | 83.00 | 82.00 | 0.050 | 90.0 / 80.0 |" in text
    assert "per-label" not in text  # rows without files are left out


def test_error_breakdown_sorts_each_miss_and_wrong_prediction_by_kind():
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts" / "dev"))
    import error_breakdown

    gold = [[(0, 5, "ORG"), (10, 15, "PER"), (20, 25, "LOC"), (30, 35, "MISC")], [(0, 4, "ORG")]]
    predicted = [
        [(0, 5, "LOC"), (10, 14, "PER"), (20, 25, "LOC"), (40, 45, "ORG")],
        [(0, 9, "PER")],
    ]
    result = error_breakdown.breakdown(gold, predicted)
    everything = result["all"]
    assert (everything["tp"], everything["fp"], everything["fn"]) == (1, 4, 4)
    assert everything["fn_kinds"] == {"type": 1, "boundary": 1, "boundary_and_type": 1, "none": 1}
    assert everything["fp_kinds"] == {"type": 1, "boundary": 1, "boundary_and_type": 1, "none": 1}
    assert result["LOC"]["f"] == pytest.approx(100 * 2 / 3, abs=0.01)  # one right, one wrong
    assert result["confusions"] == {"ORG -> LOC": 1}
    assert "| all | m | 20.0 |" in error_breakdown.markdown({"m": result})
