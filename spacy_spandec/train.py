"""Resumable training: `spacy train`'s loop with checkpoints that a later
process continues from, and an optional stop at convergence.

    python -m spacy_spandec train CONFIG OUTPUT [--until-converged] [--paths.train ...]

Runs longer than a session (hours on a CPU) are cut short; this keeps going
where the last run stopped. At every evaluation it writes OUTPUT/checkpoint/:
the pipeline (nlp.to_disk), the optimizer's moments and update counts, the
step, epoch, scores so far and the random states. Re-running the same command
resumes from it, and a resumed run takes the same steps on the same batches as
an uninterrupted one. Every evaluation is also appended to OUTPUT/curve.jsonl
(step, epoch, words, wall and training seconds, scores) for learning curves.

What differs from `spacy train`: each epoch is shuffled with its own seeded
generator (so a resumed run can skip to its batch without replaying the
global random state), and the optimizer state is keyed by a parameter's place
in the pipeline instead of by object ids, which change between processes.
"""

import argparse
import json
import random
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Tuple

import numpy
import spacy
from spacy.cli._util import parse_config_overrides, setup_gpu
from spacy.language import Language
from spacy.schemas import ConfigSchemaTraining
from spacy.training import Example
from spacy.training.initialize import init_nlp
from spacy.training.loop import (
    create_before_to_disk_callback,
    create_evaluation_callback,
    subdivide_batch,
    update_meta,
)
from spacy.util import fix_random_seed, load_config, registry, resolve_dot_names
from thinc.api import Model, Optimizer, constant, get_current_ops

CHECKPOINT = "checkpoint"
STATE_FILE = "state.json"
ARRAYS_FILE = "arrays.npz"
CURVE_FILE = "curve.jsonl"


def param_keys(nlp: Language) -> Dict[Tuple[int, str], str]:
    """Map each optimizer key, (model or shim id, parameter name), to a name
    that is the same in every process: pipe / node index in walk() order
    [/ shim index] / parameter."""
    names: Dict[Tuple[int, str], str] = {}
    for pipe_name, proc in nlp.pipeline:
        model = getattr(proc, "model", None)
        if not isinstance(model, Model):
            continue
        for i, node in enumerate(model.walk()):
            for param in node.param_names:
                names.setdefault((node.id, param), f"{pipe_name}/{i}/{param}")
            for j, shim in enumerate(node.shims):
                torch_model = getattr(shim, "_model", None)
                for param, _ in getattr(torch_model, "named_parameters", lambda: [])():
                    names.setdefault((shim.id, param), f"{pipe_name}/{i}/shim{j}/{param}")
    return names


def optimizer_state(
    optimizer: Optimizer, nlp: Language
) -> Tuple[Dict[str, Any], Dict[str, numpy.ndarray]]:
    """The optimizer's per-parameter state under stable names."""
    names = param_keys(nlp)
    unknown = [key for key in optimizer.mom1 if key not in names]
    if unknown:
        raise ValueError(f"Optimizer state for parameters outside the pipeline: {unknown[:3]}")
    arrays: Dict[str, numpy.ndarray] = {}
    for kind, store in (
        ("mom1", optimizer.mom1),
        ("mom2", optimizer.mom2),
        ("avg", optimizer.averages or {}),
    ):
        for key, value in store.items():
            arrays[f"{kind}|{names[key]}"] = numpy.asarray(value)
    counts = {
        "nr_update": {names[k]: int(v) for k, v in optimizer.nr_update.items() if k in names},
        "last_seen": {names[k]: int(v) for k, v in optimizer.last_seen.items() if k in names},
    }
    return counts, arrays


def restore_optimizer(
    optimizer: Optimizer, nlp: Language, counts: Dict[str, Any], arrays: Any, steps: int
) -> None:
    """Put saved state into a fresh optimizer built from the same config, and
    advance its schedules (learning rate, ...) by the steps already taken."""
    keys = {name: key for key, name in param_keys(nlp).items()}
    missing = [name for name in counts["nr_update"] if name not in keys]
    if missing:
        raise ValueError(
            f"The checkpoint has optimizer state for parameters this pipeline lacks ({missing[:3]}): "
            "it was written by another config. Train into a new output directory."
        )
    stores = {"mom1": optimizer.mom1, "mom2": optimizer.mom2, "avg": optimizer.averages}
    for entry in arrays.files:
        kind, _, name = entry.partition("|")
        if kind in stores and stores[kind] is not None:
            stores[kind][keys[name]] = get_current_ops().asarray(arrays[entry])
    for name, value in counts["nr_update"].items():
        optimizer.nr_update[keys[name]] = value
    for name, value in counts["last_seen"].items():
        optimizer.last_seen[keys[name]] = value
    for _ in range(steps):
        optimizer.step_schedules()


def train_batches(
    corpus: Callable[[Language], Iterable[Example]],
    nlp: Language,
    batcher: Callable,
    seed: int,
    max_epochs: int,
    start: int = 0,
) -> Iterator[Tuple[int, int, List[Example], bool]]:
    """(step, epoch, batch, last batch of its epoch), from step `start` on.
    Epoch e is shuffled by random.Random(seed * 100003 + e), so any step can
    be reached without replaying the random state of the steps before it."""
    examples = list(corpus(nlp))
    if not examples:
        raise ValueError("The training corpus is empty.")
    step, epoch = 0, 0
    while max_epochs <= 0 or epoch < max_epochs:
        batches = epoch_batches(examples, batcher, seed, epoch)
        if step + len(batches) <= start:
            step += len(batches)
        else:
            for i, batch in enumerate(batches):
                if step >= start:
                    yield step, epoch, batch, i == len(batches) - 1
                step += 1
        epoch += 1


def epoch_batches(examples: List[Any], batcher: Callable, seed: int, epoch: int = 0) -> List[Any]:
    """The batches of epoch `epoch` of `train_batches`: the examples shuffled
    by random.Random(seed * 100003 + epoch), then batched."""
    order = list(examples)
    random.Random(seed * 100003 + epoch).shuffle(order)
    return list(batcher(order))


def read_train_examples(
    config_path: Path, train_path: Path, nlp: Optional[Language] = None
) -> List[Example]:
    """The examples that `train` reads from `train_path` under the config at
    `config_path`: its `training.train_corpus` reader and the config's
    tokenizer (or `nlp`'s, to update `nlp` with them), which re-tokenizes each
    text unless gold_preproc. A batcher that counts tokens (batch_by_padded,
    batch_by_words) makes the trainer's batches of these, not of the stored
    docs."""
    config = load_config(config_path, overrides={"paths.train": str(train_path)}, interpolate=True)
    if nlp is None:
        tokenizer = {"nlp": {"tokenizer": config["nlp"]["tokenizer"]}}
        nlp = spacy.blank(config["nlp"]["lang"], config=tokenizer)
    section = config  # the train_corpus section alone: the dev reader may have no path
    for key in config["training"]["train_corpus"].split("."):
        section = section[key]
    return list(registry.resolve({"reader": section})["reader"](nlp))


def _rng_state() -> Tuple[Dict[str, Any], Dict[str, numpy.ndarray]]:
    import torch

    version, internal, gauss = random.getstate()
    np_kind, np_keys, np_pos, np_has_gauss, np_gauss = numpy.random.get_state()
    state = {
        "random": [version, list(internal), gauss],
        "numpy": [np_kind, int(np_pos), int(np_has_gauss), float(np_gauss)],
    }
    arrays = {"rng|numpy": numpy.asarray(np_keys), "rng|torch": torch.get_rng_state().numpy()}
    return state, arrays


def _set_rng_state(state: Dict[str, Any], arrays: Any) -> None:
    import torch

    version, internal, gauss = state["random"]
    random.setstate((version, tuple(internal), gauss))
    kind, pos, has_gauss, cached = state["numpy"]
    numpy.random.set_state((kind, arrays["rng|numpy"], pos, has_gauss, cached))
    torch.set_rng_state(torch.from_numpy(arrays["rng|torch"].copy()))


def save_checkpoint(
    output: Path, nlp: Language, optimizer: Optimizer, progress: Dict[str, Any]
) -> None:
    """Write OUTPUT/checkpoint atomically (a kill while writing leaves the
    previous checkpoint in place), its pipeline copied from model-last."""
    new, old, final = (
        output / f"{CHECKPOINT}.new",
        output / f"{CHECKPOINT}.old",
        output / CHECKPOINT,
    )
    for path in (new, old):
        if path.exists():
            shutil.rmtree(path)
    shutil.copytree(output / "model-last", new / "model")
    counts, arrays = optimizer_state(optimizer, nlp)
    rng, rng_arrays = _rng_state()
    numpy.savez(new / ARRAYS_FILE, **arrays, **rng_arrays)
    (new / STATE_FILE).write_text(json.dumps({**progress, "optimizer": counts, "rng": rng}))
    if final.exists():
        final.rename(old)
    new.rename(final)
    if old.exists():
        shutil.rmtree(old)


def find_checkpoint(output: Path) -> Optional[Path]:
    """The newest complete checkpoint (a kill between the two renames of
    save_checkpoint leaves it as checkpoint.old)."""
    for name in (CHECKPOINT, f"{CHECKPOINT}.old"):
        path = output / name
        if (path / STATE_FILE).exists():
            return path
    return None


def _truncate_curve(path: Path, step: int) -> None:
    """Drop the evaluations a killed run logged after its last checkpoint;
    the resumed run logs them again."""
    if path.exists():
        lines = path.read_text().splitlines(keepends=True)
        path.write_text("".join(line for line in lines if json.loads(line)["step"] <= step))


def converged(epoch_scores: List[float], min_gain: float, window: int) -> bool:
    """Dev score rose by less than min_gain over the last `window` epochs."""
    return len(epoch_scores) > window and epoch_scores[-1] - epoch_scores[-1 - window] < min_gain


def train(
    config_path: Path,
    output: Path,
    overrides: Dict[str, Any],
    *,
    until_converged: bool = False,
    min_gain: float = 0.002,
    window: int = 2,
    stop_after: Optional[int] = None,
    stdout=sys.stdout,
) -> Path:
    """Train, or resume training, into `output`. Returns the output folder.

    until_converged: also evaluate at each epoch's end, and stop when the main
        dev score rose by less than min_gain (0-1 scale) over `window` epochs.
    stop_after: stop after the first checkpoint at or past this step (to cut
        a run short on purpose, e.g. in tests); the next call resumes.
    """
    output.mkdir(parents=True, exist_ok=True)
    checkpoint = find_checkpoint(output)
    if checkpoint is None:
        config = load_config(config_path, overrides=overrides, interpolate=False)
        nlp = init_nlp(config)
        progress: Dict[str, Any] = {
            "step": -1,
            "results": [],
            "epoch_scores": [],
            "words": 0,
            "seconds": 0.0,
            "train_seconds": 0.0,
        }
        (output / CURVE_FILE).unlink(missing_ok=True)
    else:
        nlp = spacy.load(checkpoint / "model")
        progress = json.loads((checkpoint / STATE_FILE).read_text())
        if progress.get("finished"):
            stdout.write(
                f"Training in {output} finished at step {progress['step']} ({progress['finished']}): nothing to do. "
                f"Remove {checkpoint} or choose another output folder to train again.\n"
            )
            return output
        stdout.write(f"Resuming from {checkpoint} after step {progress['step']}\n")
        _truncate_curve(output / CURVE_FILE, progress["step"])
    config = nlp.config.interpolate()
    T = registry.resolve(config["training"], schema=ConfigSchemaTraining)
    seed = T["seed"] if T["seed"] is not None else 0
    fix_random_seed(seed)
    train_corpus, dev_corpus = resolve_dot_names(config, [T["train_corpus"], T["dev_corpus"]])
    optimizer: Optimizer = T["optimizer"]
    dropouts = constant(T["dropout"]) if isinstance(T["dropout"], float) else T["dropout"]
    start = progress["step"] + 1
    if checkpoint is not None:
        arrays = numpy.load(checkpoint / ARRAYS_FILE)
        restore_optimizer(optimizer, nlp, progress["optimizer"], arrays, start)
        for _ in range(start):
            next(dropouts)
        _set_rng_state(progress["rng"], arrays)
    evaluate = create_evaluation_callback(nlp, dev_corpus, T["score_weights"])
    exclude, annotating = T["frozen_components"], T["annotating_components"]
    max_steps, eval_frequency, patience = T["max_steps"], T["eval_frequency"], T["patience"]
    before_to_disk = create_before_to_disk_callback(T["before_to_disk"])
    log_step, finalize_logger = T["logger"](nlp, stdout, sys.stderr)
    losses: Dict[str, float] = {}
    results = [tuple(r) for r in progress["results"]]
    began = time.perf_counter() - progress["seconds"]
    train_seconds = progress["train_seconds"]
    batches = train_batches(train_corpus, nlp, T["batcher"], seed, T["max_epochs"], start)
    finished = "all epochs"
    try:
        for step, epoch, batch, epoch_end in batches:
            t0 = time.perf_counter()
            if T["before_update"]:
                T["before_update"](nlp, {"step": step, "epoch": epoch})
            dropout = next(dropouts)
            for subbatch in subdivide_batch(batch, T["accumulate_gradient"]):
                nlp.update(
                    subbatch,
                    drop=dropout,
                    losses=losses,
                    sgd=False,
                    exclude=exclude,
                    annotates=annotating,
                )
            for name, proc in nlp.pipeline:
                if (
                    name not in exclude
                    and getattr(proc, "is_trainable", False)
                    and proc.model not in (True, False, None)
                ):
                    proc.finish_update(optimizer)
            optimizer.step_schedules()
            train_seconds += time.perf_counter() - t0
            progress["words"] += sum(len(eg) for eg in batch)
            last = (bool(max_steps) and step >= max_steps) or (
                epoch_end and epoch == T["max_epochs"] - 1
            )
            at_epoch_end = until_converged and epoch_end
            info: Dict[str, Any] = {
                "epoch": epoch,
                "step": step,
                "score": None,
                "other_scores": None,
                "losses": losses,
                "checkpoints": results,
                "seconds": int(time.perf_counter() - began),
                "words": progress["words"],
            }
            if step % eval_frequency == 0 or last or at_epoch_end:
                score, other_scores = evaluate()
                score = float(score)
                results.append((score, step))
                is_best = score == max(r[0] for r in results)
                info.update(score=score, other_scores=other_scores, checkpoints=results)
                update_meta(T, nlp, info)
                if at_epoch_end:
                    progress["epoch_scores"].append(score)
                record = {
                    "step": step,
                    "epoch": epoch,
                    "epoch_end": epoch_end,
                    "words": progress["words"],
                    "seconds": round(time.perf_counter() - began, 2),
                    "train_seconds": round(train_seconds, 2),
                    "score": score,
                    # spaCy's parser-based ner reports numpy floats.
                    "losses": {name: float(value) for name, value in losses.items()},
                    "scores": {
                        k: v for k, v in other_scores.items() if isinstance(v, (int, float))
                    },
                }
                with (output / CURVE_FILE).open("a") as fh:
                    fh.write(json.dumps(record) + "\n")
                log_step(info)
                before_to_disk(nlp).to_disk(output / "model-last")
                if is_best:
                    if (output / "model-best").exists():
                        shutil.rmtree(output / "model-best")
                    shutil.copytree(output / "model-last", output / "model-best")
                progress.update(
                    step=step,
                    results=results,
                    seconds=time.perf_counter() - began,
                    train_seconds=train_seconds,
                )
                save_checkpoint(output, nlp, optimizer, progress)
                losses = {}
                if stop_after is not None and step >= stop_after:
                    finished = ""
                    break
                if at_epoch_end and converged(progress["epoch_scores"], min_gain, window):
                    finished = f"converged after epoch {epoch}"
                    break
            else:
                log_step(None)
            best_step = -max((r[0], -r[1]) for r in results)[1] if results else 0
            if patience and step - best_step >= patience:
                finished = f"no improvement in {patience} steps"
                break
            if last:
                finished = "max_steps" if max_steps and step >= max_steps else "max_epochs"
                break
    finally:
        finalize_logger()
    if finished:
        stdout.write(f"Training finished: {finished}\n")
        state_path = output / CHECKPOINT / STATE_FILE
        state = json.loads(state_path.read_text())
        state["finished"] = finished
        tmp = state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state))
        tmp.replace(state_path)
    return output


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m spacy_spandec train",
        description=__doc__.split("\n\n")[0],
        epilog="Other options (--paths.train, --training.max_steps, ...) override the config, as with spacy train. "
        "They are read only when training starts; a resumed run keeps the config in its checkpoint.",
    )
    parser.add_argument("config", type=Path, help="training config (.cfg)")
    parser.add_argument(
        "output", type=Path, help="output folder: model-best, model-last, checkpoint, curve.jsonl"
    )
    parser.add_argument(
        "--until-converged",
        action="store_true",
        help="evaluate at each epoch's end and stop once the dev score rises by less than --min-gain over --window epochs",
    )
    parser.add_argument("--min-gain", type=float, default=0.2, help="F1 points (default 0.2)")
    parser.add_argument("--window", type=int, default=2, help="epochs (default 2)")
    parser.add_argument(
        "--stop-after",
        type=int,
        default=None,
        help="stop after the first checkpoint at or past this step",
    )
    parser.add_argument("--gpu-id", type=int, default=-1, help="GPU id, -1 for CPU")
    args, rest = parser.parse_known_args(argv)
    setup_gpu(args.gpu_id)
    train(
        args.config,
        args.output,
        parse_config_overrides(rest),
        until_converged=args.until_converged,
        min_gain=args.min_gain / 100,
        window=args.window,
        stop_after=args.stop_after,
    )


if __name__ == "__main__":
    main()
