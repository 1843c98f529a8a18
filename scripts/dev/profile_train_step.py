"""Training cost per step: SpanDec against spaCy `ner` and token classification
on the same encoder, the same batches and the same optimizer settings, one
config after the other.

Each config is initialised from configs/<name>.cfg on the train set, warmed up,
then timed over --steps updates (`nlp.update` with the config's optimizer and
dropout, as `spacy train` does). The batches are those of the config's
`[training.batcher]` over the first epoch of the resumable trainer
(`spacy_spandec.train.epoch_batches`, seed 0), and the timed ones a seeded random sample of that epoch's
batches: the same for every config with the same batcher, and a fair sample
of a length-sorting batcher (`spacy.batch_by_padded.v1` yields each buffer's
batches longest first).
The encoder's and the span decoder's forward and backward passes are timed
apart (`ShimTimer`), so the rest of a step (optimizer, spaCy's own layers)
is what is left; `--ops N` adds the N operators that cost most inside each
of those passes, from torch.profiler. Run it on a quiet machine.

    python scripts/dev/profile_train_step.py --train corpus/conllpp/train.spacy \
        [--configs token_cls spacy_ner spandec] [--steps 20] [--repeats 3] [--ops 12] [--output results/profile/train_step.json]

A config may carry overrides, e.g. `spandec:components.spandec_ner.negative_sampling=true`.
Each config runs in a fresh process; with `--repeats R` the configs run R
rounds, every other round in reverse order, and the report gives the median
seconds per step (the middle run's split by pass and its ops) and every run's value: the
2-core machine varies by tens of percent from one run to the next.
"""

import argparse
import json
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path
from contextlib import contextmanager
from typing import Any, Dict, Iterator, List

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from run_info import report  # noqa: E402

PROJECT_DIR = Path(__file__).resolve().parents[2]
PASSES = ("forward", "backward")
# Steps run under torch.profiler, after the timed ones, with --ops.
OP_STEPS = 5
# The epoch's order and the sample of its batches, the same for every config.
SEED = 0


class ShimTimer:
    """Wall seconds spent in the forward and backward passes of some torch
    modules, by role, from Thinc's PyTorchShim (which every torch module of
    the pipeline runs in): a role's backward is the one
    `torch.autograd.backward` call from its outputs to its inputs, so the
    span decoder's backward is apart from the encoder's. Each pass runs in a
    `torch.profiler.record_function` range named `<role>_<pass>`, which
    `top_ops_in_ranges` reads."""

    def __init__(self, modules: Dict[str, Any]) -> None:
        from thinc.shims.pytorch import PyTorchShim

        roles = {id(module): name for name, module in modules.items()}
        self.seconds = {f"{name}_{kind}": 0.0 for name in modules for kind in PASSES}
        timer, original = self, PyTorchShim.begin_update

        def begin_update(shim, inputs):
            role = roles.get(id(shim._model))
            if role is None:
                return original(shim, inputs)
            with timer.timed(f"{role}_forward"):
                output, backprop = original(shim, inputs)

            def timed_backprop(grads):
                with timer.timed(f"{role}_backward"):
                    return backprop(grads)

            return output, timed_backprop

        PyTorchShim.begin_update = begin_update

    @contextmanager
    def timed(self, key: str) -> Iterator[None]:
        import torch

        started = time.perf_counter()
        with torch.profiler.record_function(key):
            yield
        self.seconds[key] += time.perf_counter() - started

    def reset(self) -> None:
        self.seconds = dict.fromkeys(self.seconds, 0.0)


def top_ops_in_ranges(events, ranges: List[str], n_ops: int, steps: int) -> Dict[str, List[Dict]]:
    """The `n_ops` operators with the most self CPU time inside each range,
    in ms per step: what a faster step would have to make cheaper. (A range
    is one module's pass, which profile_split's whole-run `top_ops` cannot
    tell apart: the encoder and the decoder run the same aten ops.)"""
    totals: Dict[str, Dict[str, List[float]]] = {name: {} for name in ranges}
    for event in events:
        parent = event.cpu_parent
        while parent is not None and parent.name not in totals:
            parent = parent.cpu_parent
        if parent is None or event.name in totals:
            continue
        row = totals[parent.name].setdefault(event.name, [0.0, 0])
        row[0] += event.self_cpu_time_total / 1000.0
        row[1] += 1
    return {
        name: [
            {"op": op, "self_ms_per_step": round(ms / steps, 2), "calls_per_step": calls / steps}
            for op, (ms, calls) in sorted(ops.items(), key=lambda item: -item[1][0])[:n_ops]
        ]
        for name, ops in totals.items()
        if ops
    }


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


def profile(spec: str, train: Path, warmup: int, steps: int, n_ops: int) -> Dict:
    import spacy
    import torch
    from spacy.schemas import ConfigSchemaTraining
    from spacy.training.initialize import init_nlp
    from spacy.util import load_config, registry

    import spacy_spandec  # noqa: F401  (registers the factories)
    from spacy_spandec.train import epoch_batches, read_train_examples

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
    examples = read_train_examples(PROJECT_DIR / "configs" / f"{config_name}.cfg", train, nlp)
    epoch = epoch_batches(examples, training["batcher"], SEED)
    n_batches = warmup + steps + (OP_STEPS if n_ops else 0)
    batches = random.Random(SEED).sample(epoch, n_batches)
    timer = ShimTimer(torch_modules(nlp))
    for batch in batches[:warmup]:
        nlp.update(batch, drop=dropout, sgd=optimizer)
    timer.reset()
    words = 0
    step_seconds: List[float] = []
    for batch in batches[warmup : warmup + steps]:
        started = time.perf_counter()
        nlp.update(batch, drop=dropout, sgd=optimizer)
        step_seconds.append(time.perf_counter() - started)
        words += sum(len(eg.predicted) for eg in batch)
    total = sum(step_seconds)
    passes = {f"{key}_s": round(s, 3) for key, s in timer.seconds.items()}
    ops = {}
    if n_ops:
        # Apart from the timed steps: the profiler slows every op down.
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            for batch in batches[warmup + steps :]:
                nlp.update(batch, drop=dropout, sgd=optimizer)
        ops = {"top_ops": top_ops_in_ranges(prof.events(), list(timer.seconds), n_ops, OP_STEPS)}
    return {
        "config": spec,
        "pipeline": nlp.pipe_names,
        "steps": steps,
        "batcher": dict(nlp.config["training"]["batcher"]),
        "words_per_step": round(words / steps, 1),
        "seconds": round(total, 3),
        "seconds_per_step": round(total / steps, 4),
        "words_per_second": round(words / total, 1),
        **passes,
        **ops,
        "spacy": spacy.__version__,
    }


def run_child(spec: str, args: argparse.Namespace) -> Dict:
    """One config in a fresh process, so no config inherits another's allocator
    state or warmed-up caches."""
    cmd = [sys.executable, __file__, "--child", spec, "--train", str(args.train)]
    cmd += ["--warmup", str(args.warmup)]
    cmd += ["--steps", str(args.steps), "--ops", str(args.ops)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train", type=Path, required=True)
    parser.add_argument("--configs", nargs="+", default=["token_cls", "spacy_ner", "spandec"])
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="rounds over the configs, every other one in reverse order; reports the medians",
    )
    parser.add_argument(
        "--ops",
        type=int,
        default=0,
        help=f"after the timed steps, profile {OP_STEPS} more with torch.profiler and "
        "report the N ops with the most self CPU time in each module's forward and backward",
    )
    parser.add_argument("--output", type=Path, default=None)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        row = profile(args.child, args.train, args.warmup, args.steps, args.ops)
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
    report({"rows": rows}, args.output)


if __name__ == "__main__":
    main()
