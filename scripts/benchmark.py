"""Side-by-side benchmark: token classification, spaCy ner, PL-Marker (SpanMarker),
SpanDec and SF-SpanDec, on the same encoder, data and machine, in one process.

    python scripts/benchmark.py --datasets conllpp bc5cdr [--serving] \
        [--n-docs 512] [--batch-sizes 8 64] [--repeats 3] [--output results/benchmark/<datasets>]

It reuses the trained models of the project (`spacy project run train
--vars.config X`, `scripts/train_spanmarker.py`); a missing one is skipped
with the command that trains it. For each dataset it reports:

- seqeval F1/P/R on the full test set (from metrics/<dataset>/<name>.json when
  it is newer than the model: `spacy evaluate` writes it for the spaCy
  pipelines, `--write-metrics` for SpanMarker; otherwise computed here, as for
  the serving variants);
- docs/s and words/s at each batch size, end to end as a user runs them
  (`nlp.pipe` on raw texts; SpanMarker's own `predict` on raw texts), after a
  warm-up, median of --repeats passes with min/max, models alternating;
- peak RSS of a fresh process that loads the model and annotates the texts;
- analytic GFLOPs per sample (spacy_spandec.flops, the paper's Appendix D)
  with this dataset's mean wordpieces and candidate spans per sample;
- SF's fraction of candidate spans kept.

--serving adds int8 / bf16 variants (spacy_spandec.serving) on the first
dataset. Nothing else heavy may run meanwhile: the numbers are ratios within
one run. Writes <output>/benchmark.json, benchmark.md and benchmark.png.

    python scripts/benchmark.py --datasets bc5cdr --models spanmarker --write-metrics

only scores (no timing; the machine need not be quiet).
"""

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import spacy
import torch
from spacy.tokens import Doc, DocBin, Span
from spacy.training import Example

from spacy_spandec import flops
from spacy_spandec.candidates import count_candidates
from spacy_spandec.encoders import offline_encoder
from spacy_spandec.scoring import score_ents
from spacy_spandec.serving import quantize_encoder

from run_all import CPU_STEPS  # scripts/ is on sys.path
from run_info import machine, peak_rss_mb

PROJECT_DIR = Path(__file__).resolve().parents[1]
# name -> (kind, path template, component overrides, how to train it)
MODELS: Dict[str, Dict[str, Any]] = {
    "token_cls": {
        "kind": "spacy",
        "path": "training/{ds}/token_cls/model-best",
        "config": "token_cls",
    },
    "spacy_ner": {
        "kind": "spacy",
        "path": "training/{ds}/spacy_ner/model-best",
        "config": "spacy_ner",
    },
    "spanmarker": {"kind": "spanmarker", "path": "training/{ds}/spanmarker/model", "config": None},
    "spandec": {
        "kind": "spacy",
        "path": "training/{ds}/spandec/model-best",
        "config": "spandec",
        "overrides": {"sf_threshold": 0.0},
    },
    "sf_spandec": {
        "kind": "spacy",
        "path": "training/{ds}/sf_spandec/model-best",
        "config": "sf_spandec",
    },
}
# Serving variants: (base model, decoder inference_dtype, quantize the encoder)
SERVING: Dict[str, Dict[str, Any]] = {
    "token_cls+int8": {"base": "token_cls", "dtype": None, "encoder_int8": True},
    "spandec+bf16": {"base": "spandec", "dtype": "bfloat16", "encoder_int8": False},
    "sf_spandec+bf16": {"base": "sf_spandec", "dtype": "bfloat16", "encoder_int8": False},
    "spandec+int8dec": {"base": "spandec", "dtype": "int8", "encoder_int8": False},
    "sf_spandec+int8dec": {"base": "sf_spandec", "dtype": "int8", "encoder_int8": False},
    "spandec+int8": {"base": "spandec", "dtype": "int8", "encoder_int8": True},
    "sf_spandec+int8": {"base": "sf_spandec", "dtype": "int8", "encoder_int8": True},
}
VARIANT_SPECS: List[str] = []  # --variant arguments, passed on to the RSS children
LABELS = {
    "token_cls": "Token classif.",
    "spacy_ner": "spaCy ner",
    "spanmarker": "PL-Marker (SpanMarker)",
    "spandec": "SpanDec",
    "sf_spandec": "SF-SpanDec",
}


def base_of(name: str) -> str:
    """The kind of trained model a serving variant or a `--variant` runs (the
    name itself otherwise)."""
    return SERVING.get(name, {}).get("base") or MODELS.get(name, {}).get("variant_of") or name


def add_variants(specs: Sequence[str]) -> List[str]:
    """`--variant NAME=BASE:PATH`: another trained model of kind BASE (e.g. a
    SpanDec trained with another architecture) timed in the same run."""
    names = []
    for spec in specs:
        name, _, rest = spec.partition("=")
        base, _, path = rest.partition(":")
        if not name or base not in MODELS or not path:
            raise SystemExit(
                f"--variant {spec!r}: expected NAME=BASE:PATH with BASE one of {', '.join(MODELS)}"
            )
        MODELS[name] = {**MODELS[base], "path": path, "variant_of": base}
        LABELS[name] = name
        names.append(name)
    return names


def label_of(name: str) -> str:
    if name in SERVING:
        spec = SERVING[name]
        parts = ([f"decoder {spec['dtype']}"] if spec["dtype"] else []) + (
            ["encoder int8"] if spec["encoder_int8"] else []
        )
        return f"{LABELS[spec['base']]} ({', '.join(parts)})"
    return LABELS.get(name, name)


def train_hint(name: str, dataset: str) -> str:
    """The command that trains `name` at the CPU budget the other rows use."""
    if name == "spanmarker":
        return (
            f"python scripts/train_spanmarker.py --dataset {dataset} --max-steps {CPU_STEPS} "
            f"--output training/{dataset}/spanmarker"
        )
    # run_all.py knows the CPU budget of each config's batcher and granularity.
    steps = "assets convert train" + (" calibrate" if name in ("spandec", "sf_spandec") else "")
    config = MODELS[name]["config"]
    return f"python scripts/run_all.py --datasets {dataset} --configs {config} --steps {steps}"


class Runner:
    """One model as a user runs it: load, annotate raw texts, score."""

    def __init__(self, name: str, dataset: str) -> None:
        self.name = name
        self.base = base_of(name)
        spec = MODELS.get(name) or MODELS[self.base]
        self.kind = spec["kind"]
        self.path = PROJECT_DIR / spec["path"].format(ds=dataset)
        self.overrides = dict(spec.get("overrides", {}))
        self.serving = SERVING.get(name)
        if self.serving and self.serving["dtype"]:
            self.overrides["inference_dtype"] = self.serving["dtype"]
        self.n_candidates = 0
        self.n_kept = 0

    def available(self) -> bool:
        return self.path.exists()

    def load(self) -> None:
        if self.kind == "spanmarker":
            from span_marker import SpanMarkerModel

            self.model = SpanMarkerModel.from_pretrained(str(self.path))
            self.model.eval()
            return
        config = {"components": {"spandec_ner": self.overrides}} if self.overrides else {}
        self.nlp = spacy.load(self.path, config=config)
        if self.serving and self.serving["encoder_int8"]:
            quantize_encoder(self.nlp)

    def run(self, texts: Sequence[str], batch_size: int) -> int:
        if self.kind == "spanmarker":
            return len(self.model.predict(list(texts), batch_size=batch_size))
        n = 0
        for doc in self.nlp.pipe(texts, batch_size=batch_size):
            group = doc.spans.get("spandec")
            if group is not None:
                self.n_candidates += group.attrs["n_candidates"]
                self.n_kept += group.attrs["n_kept"]
            n += 1
        return n

    def score(self, gold: List[Doc]) -> Dict[str, Any]:
        """Test scores. spaCy pipelines take the path `spacy evaluate` takes
        (the pipeline tokenizes the raw text, the scorer aligns), so computed
        rows compare with the metrics files; SpanMarker reads the gold words."""
        if self.kind == "spacy":
            return self.nlp.evaluate([Example(self.nlp.make_doc(ref.text), ref) for ref in gold])
        outputs = self.model.predict([[t.text for t in doc] for doc in gold], batch_size=32)
        examples = []
        for doc, ents in zip(gold, outputs):
            pred = Doc(
                doc.vocab, words=[t.text for t in doc], spaces=[bool(t.whitespace_) for t in doc]
            )
            pred.ents = [
                Span(pred, e["word_start_index"], e["word_end_index"], label=e["label"])
                for e in ents
            ]
            examples.append(Example(pred, doc))
        return score_ents(examples)


def load_test(dataset: str, vocab: Any) -> List[Doc]:
    return list(DocBin().from_disk(PROJECT_DIR / "corpus" / dataset / "test.spacy").get_docs(vocab))


def metrics_path(dataset: str, name: str) -> Path:
    return PROJECT_DIR / "metrics" / dataset / f"{name}.json"


def fresh_metrics(runner: Runner, dataset: str) -> Optional[Path]:
    """metrics/<dataset>/<name>.json if it was written after every file of the
    model it scores; a model retrained since then is scored again."""
    path = metrics_path(dataset, runner.name)
    if not path.exists() or runner.serving:
        return None
    newest = max((f.stat().st_mtime for f in runner.path.rglob("*") if f.is_file()), default=0.0)
    return path if path.stat().st_mtime >= newest else None


def scores_of(runner: Runner, dataset: str, gold: List[Doc], limit: int) -> Dict[str, Any]:
    """F1 from the evaluate step (`spacy evaluate`, or --write-metrics for
    SpanMarker) when it is newer than the model, else computed here."""
    keys = ("seqeval_f", "seqeval_p", "seqeval_r", "ents_f")
    metrics = fresh_metrics(runner, dataset)
    if metrics and not limit:
        data = json.loads(metrics.read_text())
        return {k: data.get(k) for k in keys} | {"source": str(metrics.relative_to(PROJECT_DIR))}
    start = time.perf_counter()
    data = runner.score(gold)
    return {k: data.get(k) for k in keys} | {
        "source": "computed by scripts/benchmark.py",
        "seconds": round(time.perf_counter() - start, 1),
    }


def write_metrics(dataset: str, names: List[str]) -> None:
    """Score each model on the full test set into metrics/<dataset>/<name>.json,
    SpanMarker's counterpart of `spacy evaluate`. Why apart from the timing:
    scoring PL-Marker takes many minutes and needs no quiet machine."""
    gold = load_test(dataset, spacy.blank("en").vocab)
    for name in names:
        runner = Runner(name, dataset)
        if not runner.available():
            raise SystemExit(
                f"{runner.path} does not exist; train it first: {train_hint(runner.base, dataset)}"
            )
        runner.load()
        start = time.perf_counter()
        scores = runner.score(gold)
        scores.update(
            {
                "model": str(runner.path.relative_to(PROJECT_DIR)),
                "test_docs": len(gold),
                "seconds": round(time.perf_counter() - start, 1),
                "date": time.strftime("%Y-%m-%d %H:%M %Z"),
            }
        )
        path = metrics_path(dataset, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(scores, indent=1))
        print(f"[{dataset}] {name}: seqeval F1 {scores['seqeval_f']:.4f} -> {path}", flush=True)


def training_budget(runner: Runner) -> str:
    if runner.kind == "spanmarker":
        info = json.loads((runner.path.parent / "training.json").read_text())
        return f"{info['max_steps']} steps x {info['sentences_per_step']} sentences"
    cfg = spacy.util.load_config(runner.path / "config.cfg", interpolate=False)
    batcher = cfg["training"]["batcher"]
    return f"{cfg['training']['max_steps']} steps x {batcher.get('size')} sentences"


def sample_shape(texts: Sequence[str], docs: List[Doc]) -> Dict[str, float]:
    """Mean wordpieces (S, with [CLS]/[SEP]) and span markers (M) per sample."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(offline_encoder())
    pieces = [len(ids) for ids in tokenizer(list(texts))["input_ids"]]
    spans = [count_candidates(len(doc), 8) for doc in docs]
    return {
        "S": statistics.mean(pieces),
        "M": 2 * statistics.mean(spans),
        "words": statistics.mean(len(d) for d in docs),
    }


def gflops(
    base: str, shape: flops.EncoderShape, S: float, M: float, kept: Optional[float]
) -> float:
    if base == "token_cls":
        value = flops.token_classification(shape, S)
    elif base == "spacy_ner":
        value = flops.transition_ner(shape, S)
    elif base == "spanmarker":
        value = flops.pl_marker(shape, S, M)
    else:
        value = flops.spandec(shape, S, M, shape.n_layers - 1, kept if kept is not None else 1.0)
    return value / 1e9


def peak_rss(name: str, dataset: str, n_docs: int, batch_size: int) -> Dict[str, float]:
    """Peak RSS of a fresh process that loads `name` and annotates the texts."""
    cmd = [
        sys.executable,
        __file__,
        "--rss-child",
        name,
        "--datasets",
        dataset,
        "--n-docs",
        str(n_docs),
        "--batch-sizes",
        str(batch_size),
        *[f"--variant={spec}" for spec in VARIANT_SPECS],
    ]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def rss_child(name: str, dataset: str, n_docs: int, batch_size: int) -> None:
    base_rss = peak_rss_mb()
    runner = Runner(name, dataset)
    runner.load()
    loaded = peak_rss_mb()
    texts = [doc.text for doc in load_test(dataset, spacy.blank("en").vocab)[:n_docs]]
    runner.run(texts, batch_size)
    peak = peak_rss_mb()
    print(
        json.dumps(
            {
                "imports_mb": round(base_rss, 1),
                "loaded_mb": round(loaded, 1),
                "peak_mb": round(peak, 1),
            }
        )
    )


def time_models(
    runners: List[Runner], texts: List[str], batch_sizes: Sequence[int], repeats: int
) -> Dict[str, Dict[str, Any]]:
    n_words = sum(len(text.split()) for text in texts)
    result: Dict[str, Dict[str, Any]] = {r.name: {} for r in runners}
    for batch_size in batch_sizes:
        for runner in runners:  # warm-up: lazy init, allocator, quantized views
            runner.run(texts[: max(2 * batch_size, 32)], batch_size)
        times: Dict[str, List[float]] = {r.name: [] for r in runners}
        for repeat in range(repeats):
            order = runners[repeat % len(runners) :] + runners[: repeat % len(runners)]
            for runner in order:
                runner.n_candidates = runner.n_kept = 0
                start = time.perf_counter()
                assert runner.run(texts, batch_size) == len(texts)
                times[runner.name].append(time.perf_counter() - start)
                print(f"  b{batch_size} {runner.name}: {times[runner.name][-1]:.2f}s", flush=True)
        for runner in runners:
            secs = times[runner.name]
            median = statistics.median(secs)
            result[runner.name][f"b{batch_size}"] = {
                "seconds": [round(s, 3) for s in secs],
                "docs_per_s": round(len(texts) / median, 1),
                "docs_per_s_min": round(len(texts) / max(secs), 1),
                "docs_per_s_max": round(len(texts) / min(secs), 1),
                "words_per_s": round(n_words / median, 1),
            }
            if runner.n_candidates:
                result[runner.name]["kept_fraction"] = round(runner.n_kept / runner.n_candidates, 4)
    return result


def benchmark_dataset(dataset: str, names: List[str], args: argparse.Namespace) -> Dict[str, Any]:
    nlp = spacy.blank("en")
    gold = load_test(dataset, nlp.vocab)
    scored = gold[: args.test_limit] if args.test_limit else gold
    texts = [doc.text for doc in gold[: args.n_docs]]
    runners, skipped = [], {}
    for name in names:
        runner = Runner(name, dataset)
        if runner.available():
            runner.load()
            runners.append(runner)
        else:
            skipped[name] = f"not trained: {train_hint(runner.base, dataset)}"
            print(f"[{dataset}] skip {name}: {skipped[name]}", flush=True)
    print(f"[{dataset}] timing {[r.name for r in runners]} on {len(texts)} test texts", flush=True)
    timings = time_models(runners, texts, args.batch_sizes, args.repeats)
    shape_stats = sample_shape(texts, gold[: args.n_docs])
    from transformers import AutoConfig

    shape = flops.EncoderShape.from_hf_config(AutoConfig.from_pretrained(offline_encoder()))
    rows: Dict[str, Any] = {}
    for runner in runners:
        print(f"[{dataset}] scoring {runner.name}", flush=True)
        row = {"label": label_of(runner.name), "budget": training_budget(runner)}
        row.update(scores_of(runner, dataset, scored, args.test_limit))
        row.update(timings[runner.name])
        row["gflops"] = round(
            gflops(
                runner.base, shape, shape_stats["S"], shape_stats["M"], row.get("kept_fraction")
            ),
            3,
        )
        rows[runner.name] = row
    for runner in runners:  # free memory before the RSS children
        runner.model = runner.nlp = None
    if not args.no_rss:
        for name in rows:
            print(f"[{dataset}] peak RSS {name}", flush=True)
            rows[name]["rss"] = peak_rss(name, dataset, args.n_docs, max(args.batch_sizes))
    base = rows.get("token_cls")
    for row in rows.values():
        for batch_size in args.batch_sizes:
            key = f"b{batch_size}"
            if base and key in row:
                row[key]["vs_token_cls"] = round(
                    row[key]["docs_per_s"] / base[key]["docs_per_s"], 3
                )
    return {
        "n_docs": len(texts),
        "sample_shape": shape_stats,
        "encoder": shape.__dict__,
        "models": rows,
        "skipped": skipped,
    }


# The targets: (model, reference, minimum ratio of docs/s at the first batch size).
SPEED_TARGETS = [
    ("sf_spandec", "token_cls", 1.1),
    ("spandec", "token_cls", 0.8),
    ("spandec", "spanmarker", 10.0),
    ("sf_spandec", "spanmarker", 10.0),
]
# (model, reference, minimum F1 difference in points)
F1_TARGETS = [
    ("spandec", "token_cls", 0.5),
    ("spandec", "spanmarker", -0.3),
    ("sf_spandec", "spandec", -0.5),
]


def targets(models: Dict[str, Any], batch_size: int) -> List[str]:
    """Each target met or missed, with the measured value, for every variant
    of the model (float32 and the serving dtypes), so nothing is cherry-picked."""
    key, lines = f"b{batch_size}", []
    for name, ref, minimum in SPEED_TARGETS:
        if ref not in models:
            continue
        for variant, row in models.items():
            if base_of(variant) != name or (SERVING.get(variant) or {}).get("encoder_int8"):
                continue
            ratio = row[key]["docs_per_s"] / models[ref][key]["docs_per_s"]
            lines.append(
                f"- {row['label']} / {models[ref]['label']} docs/s at batch {batch_size}: "
                f"{ratio:.2f}× (target ≥ {minimum}×: {'met' if ratio >= minimum else 'missed'})"
            )
    for name, ref, minimum in F1_TARGETS:
        if (
            name in models
            and ref in models
            and models[name].get("seqeval_f") is not None
            and models[ref].get("seqeval_f") is not None
        ):
            diff = 100 * (models[name]["seqeval_f"] - models[ref]["seqeval_f"])
            budgets = (models[name]["budget"], models[ref]["budget"])
            verdict = "met" if diff >= minimum else "missed"
            if budgets[0] != budgets[1]:
                verdict = f"not comparable: trained {budgets[0]} vs {budgets[1]}"
            lines.append(
                f"- {models[name]['label']} − {models[ref]['label']} F1: {diff:+.2f} "
                f"(target ≥ {minimum:+.1f}: {verdict})"
            )
    return lines


def markdown(result: Dict[str, Any]) -> str:
    lines = [
        "# Side-by-side benchmark",
        "",
        f"{result['date']} on {result['machine']} ({result['torch_threads']} torch threads), "
        f"command `{result['command']}`. Throughput is end to end on raw test texts, median of "
        f"{result['repeats']} passes (min-max in brackets), models alternating in one process; ×tok is the "
        "ratio to token classification in the same run. F1 is seqeval on the full test set.",
        "",
    ]
    for dataset, data in result["datasets"].items():
        bs = result["batch_sizes"]
        lines += [
            f"## {dataset} ({data['n_docs']} texts timed, {data['sample_shape']['words']:.1f} words, "
            f"{data['sample_shape']['S']:.1f} wordpieces per sample)",
            "",
        ]
        head = (
            "| model | budget | F1 | P | R | "
            + " | ".join(f"docs/s b{b} (×tok)" for b in bs)
            + f" | words/s b{bs[0]} | peak RSS MB | GFLOPs | kept |"
        )
        lines += [head, "|" + "---|" * (head.count("|") - 1)]
        for name, row in data["models"].items():

            def pct(key: str) -> str:
                return f"{100 * row[key]:.1f}" if row.get(key) is not None else "–"

            cells = [
                row["label"],
                row["budget"],
                pct("seqeval_f"),
                pct("seqeval_p"),
                pct("seqeval_r"),
            ]
            for b in bs:
                t = row[f"b{b}"]
                spread = f"[{t['docs_per_s_min']:.0f}-{t['docs_per_s_max']:.0f}]"
                cells.append(
                    f"{t['docs_per_s']:.0f} {spread} ({t.get('vs_token_cls', float('nan')):.2f}×)"
                )
            cells.append(f"{row[f'b{bs[0]}']['words_per_s']:.0f}")
            cells.append(f"{row['rss']['peak_mb']:.0f}" if "rss" in row else "–")
            cells.append(f"{row['gflops']:.2f}")
            cells.append(f"{100 * row['kept_fraction']:.1f}%" if "kept_fraction" in row else "–")
            lines.append("| " + " | ".join(cells) + " |")
        checks = targets(data["models"], bs[0])
        if checks:
            lines += [
                "",
                f"Targets on {dataset} (encoder float32; int8-encoder rows are excluded, since the "
                "token-classification reference runs a float32 encoder):",
                "",
            ] + checks
        for name, why in data["skipped"].items():
            lines.append(f"\n{name}: {why}")
        lines.append("")
    return "\n".join(lines)


def plot(result: Dict[str, Any], path: Path) -> None:
    """F1 against throughput at the smallest batch size (the paper's Figure 1).

    Colour is the trained model, shape how it is served: circles as trained,
    squares with a bf16 decoder, triangles with an int8 decoder, diamonds with
    an int8 encoder too. Each point is named in a legend beside its panel: with
    eleven points in a narrow F1 band, labels next to the markers would overlap
    or sit closer to a neighbour than to their own point."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

    colours = {name: plt.get_cmap("tab10")(i) for i, name in enumerate(MODELS)}
    datasets = result["datasets"]
    fig, axes = plt.subplots(1, len(datasets), figsize=(9.5 * len(datasets), 5), squeeze=False)
    key = f"b{result['batch_sizes'][0]}"
    for ax, (dataset, data) in zip(axes[0], datasets.items()):
        for name, row in data["models"].items():
            if row.get("seqeval_f") is None:
                continue
            ax.scatter(
                row[key]["docs_per_s"],
                100 * row["seqeval_f"],
                s=30 + 30 * row["gflops"],
                alpha=0.8,
                marker=serving_marker(name),
                color=colours[base_of(name)],
                label=row["label"],
            )
        ax.set_xscale("log")
        low, high = ax.get_xlim()
        # Within one decade 1-2-5 ticks can leave a single label: tick evenly instead.
        ax.xaxis.set_major_locator(
            LogLocator(subs=(1.0, 2.0, 5.0)) if high / low > 10 else MaxNLocator(nbins=6)
        )
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel(f"docs/s (batch {key[1:]}, log scale)")
        ax.set_ylabel("seqeval F1 (test)")
        ax.set_title(f"{dataset}: marker area ~ GFLOPs/sample", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(
            loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False, markerscale=0.6
        )
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def serving_marker(name: str) -> str:
    """Marker shape of a model as served (see `plot`)."""
    spec = SERVING.get(name)
    if spec is None:
        return "o"
    if spec["encoder_int8"]:
        return "D"
    return "s" if spec["dtype"] == "bfloat16" else "^"


def write_report(result: Dict[str, Any], output: Path) -> str:
    """benchmark.md and benchmark.png of a result; returns the Markdown."""
    output.mkdir(parents=True, exist_ok=True)
    text = markdown(result)
    (output / "benchmark.md").write_text(text)
    plot(result, output / "benchmark.png")
    return text


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", nargs="+", default=["conllpp", "bc5cdr"])
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME=BASE:PATH",
        help="also time this pipeline, a model of kind BASE (e.g. spandec) at PATH; repeatable",
    )
    parser.add_argument(
        "--serving", action="store_true", help="add int8/bf16 variants on the first dataset"
    )
    parser.add_argument("--n-docs", type=int, default=512)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[8, 64])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--test-limit", type=int, default=0, help="score on the first K test docs only (smoke runs)"
    )
    parser.add_argument("--no-rss", action="store_true")
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help="default: results/benchmark/<datasets joined by _>",
    )
    parser.add_argument("--rss-child", default=None, help=argparse.SUPPRESS)
    parser.add_argument(
        "--write-metrics",
        action="store_true",
        help="only score --models on each full test set into metrics/<dataset>/<name>.json",
    )
    parser.add_argument(
        "--replot",
        type=Path,
        default=None,
        help="redraw the table and plot from this benchmark.json into --output; times nothing",
    )
    args = parser.parse_args(argv)
    args.output = args.output or PROJECT_DIR / "results" / "benchmark" / "_".join(args.datasets)
    VARIANT_SPECS[:] = args.variant
    variants = add_variants(args.variant)
    if args.replot:
        write_report(json.loads(args.replot.read_text()), args.output)
        return
    if args.write_metrics:
        from train_spanmarker import retain_freed_memory

        retain_freed_memory()  # scoring only: the timed runs keep the default allocator
        for dataset in args.datasets:
            write_metrics(dataset, list(args.models))
        return
    if args.rss_child:
        rss_child(args.rss_child, args.datasets[0], args.n_docs, args.batch_sizes[0])
        return
    result: Dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "machine": machine(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "command": "python scripts/benchmark.py "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "batch_sizes": args.batch_sizes,
        "repeats": args.repeats,
        "datasets": {},
    }
    args.output.mkdir(parents=True, exist_ok=True)
    for i, dataset in enumerate(args.datasets):
        names = list(args.models) + variants + (list(SERVING) if args.serving and i == 0 else [])
        result["datasets"][dataset] = benchmark_dataset(dataset, names, args)
        (args.output / "benchmark.json").write_text(json.dumps(result, indent=1))
    print(write_report(result, args.output))


if __name__ == "__main__":
    main()
