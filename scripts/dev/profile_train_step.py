"""Training cost per step: SpanDec against spaCy `ner` and token classification
on the same encoder, the same batches and the same optimizer settings, one
config after the other.

Each config is initialised from configs/<name>.cfg on the train set, warmed up,
then timed over --steps updates of the same --batch-size train sentences
(`nlp.update` with the config's optimizer and dropout, as `spacy train` does).
Forward hooks on the torch modules time the encoder's and the span decoder's
forward passes, so the rest of a step (backward, optimizer, spaCy's own
layers) is what is left. Run it on a quiet machine.

    python scripts/dev/profile_train_step.py --train corpus/conllpp/train.spacy \
        [--configs token_cls spacy_ner spandec] [--steps 20] [--repeats 3] [--output results/profile/train_step.json]

A config may carry overrides, e.g. `spandec:components.spandec_ner.negative_sampling=true`.
Each config runs in a fresh process; with `--repeats R` the configs run R
rounds, every other round in reverse order, and the report gives the median
seconds per step (the middle run's forward split) and every run's value: the
2-core machine varies by tens of percent from one run to the next.
"""

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from run_info import machine, now  # noqa: E402

PROJECT_DIR = Path(__file__).resolve().parents[2]


class ForwardTimer:
    """Wall seconds spent in the forward passes of some torch modules."""

    def __init__(self, modules: Dict[str, Any]) -> None:
        self.seconds = {name: 0.0 for name in modules}
        self._started: Dict[str, float] = {}
        for name, module in modules.items():
            module.register_forward_pre_hook(self._pre(name))
            module.register_forward_hook(self._post(name))

    def _pre(self, name: str):
        def hook(module, inputs):
            self._started[name] = time.perf_counter()

        return hook

    def _post(self, name: str):
        def hook(module, inputs, output):
            self.seconds[name] += time.perf_counter() - self._started.pop(name)

        return hook

    def reset(self) -> None:
        self.seconds = {name: 0.0 for name in self.seconds}


def torch_modules(nlp) -> Dict[str, Any]:
    """The encoder and (for SpanDec) the span decoder, by role."""
    from spacy_spandec.layers.decoder import SpanDecNet

    modules: Dict[str, Any] = {}
    for name, pipe in nlp.pipeline:
        if not hasattr(pipe, "model"):
            continue
        for node in pipe.model.walk():
            shim = node.shims[0] if node.shims else None
            module = getattr(shim, "_model", None)
            if module is None:
                continue
            if isinstance(module, SpanDecNet):
                modules["span_decoder"] = module
            elif name == "transformer":
                modules["encoder"] = module
    return modules


def profile(spec: str, train: Path, batch_size: int, warmup: int, steps: int) -> Dict:
    import spacy
    from spacy.schemas import ConfigSchemaTraining
    from spacy.training import Corpus
    from spacy.training.initialize import init_nlp
    from spacy.util import load_config, registry

    import spacy_spandec  # noqa: F401  (registers the factories)

    config_name, _, settings = spec.partition(":")
    overrides: Dict[str, Any] = {"paths.train": str(train), "paths.dev": str(train)}
    for item in filter(None, settings.split(",")):
        key, _, value = item.partition("=")
        overrides[key] = json.loads(value)
    config = load_config(
        PROJECT_DIR / "configs" / f"{config_name}.cfg", overrides=overrides, interpolate=False
    )
    nlp = init_nlp(config)
    training = registry.resolve(nlp.config.interpolate()["training"], schema=ConfigSchemaTraining)
    optimizer, dropout = training["optimizer"], training["dropout"]
    examples = list(Corpus(str(train))(nlp))
    batches = [examples[i * batch_size : (i + 1) * batch_size] for i in range(warmup + steps)]
    timer = ForwardTimer(torch_modules(nlp))
    for batch in batches[:warmup]:
        nlp.update(batch, drop=dropout, sgd=optimizer)
    timer.reset()
    words = 0
    step_seconds: List[float] = []
    for batch in batches[warmup:]:
        started = time.perf_counter()
        nlp.update(batch, drop=dropout, sgd=optimizer)
        step_seconds.append(time.perf_counter() - started)
        words += sum(len(eg.predicted) for eg in batch)
    total = sum(step_seconds)
    forward = {f"{name}_forward_s": round(s, 3) for name, s in timer.seconds.items()}
    return {
        "config": spec,
        "pipeline": nlp.pipe_names,
        "steps": steps,
        "batch_size": batch_size,
        "seconds": round(total, 3),
        "seconds_per_step": round(total / steps, 4),
        "words_per_second": round(words / total, 1),
        **forward,
        "spacy": spacy.__version__,
    }


def run_child(spec: str, args: argparse.Namespace) -> Dict:
    """One config in a fresh process, so no config inherits another's allocator
    state or warmed-up caches."""
    cmd = [sys.executable, __file__, "--child", spec, "--train", str(args.train)]
    cmd += ["--batch-size", str(args.batch_size), "--warmup", str(args.warmup)]
    cmd += ["--steps", str(args.steps)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train", type=Path, required=True)
    parser.add_argument("--configs", nargs="+", default=["token_cls", "spacy_ner", "spandec"])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="rounds over the configs, every other one in reverse order; reports the medians",
    )
    parser.add_argument("--output", type=Path, default=None)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        row = profile(args.child, args.train, args.batch_size, args.warmup, args.steps)
        print(json.dumps(row))
        return
    runs: Dict[str, List[Dict]] = {name: [] for name in args.configs}
    for round_ in range(args.repeats):
        for name in args.configs if round_ % 2 == 0 else args.configs[::-1]:
            runs[name].append(run_child(name, args))
    rows = []
    for name in args.configs:
        row = dict(runs[name][len(runs[name]) // 2])
        for key in ("seconds_per_step", "words_per_second"):
            row[key] = statistics.median(run[key] for run in runs[name])
        row["seconds_per_step_runs"] = [run["seconds_per_step"] for run in runs[name]]
        rows.append(row)
    base = rows[0]
    for row in rows:
        row["seconds_per_step_vs_" + base["config"]] = round(
            row["seconds_per_step"] / base["seconds_per_step"], 3
        )
    result = {
        "command": " ".join(["python"] + sys.argv),
        "date": now(),
        "machine": machine(),
        "rows": rows,
    }
    text = json.dumps(result, indent=1)
    print(text)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text + "\n")


if __name__ == "__main__":
    main()
