"""Run every benchmark with every model variant via `spacy project run`, and
record the wall time of each step in results/summary/timings.json.

Why a script: weasel workflows cannot loop over vars, so `spacy project run all`
calls this, which calls `spacy project run STEP . --vars.dataset=X
--vars.config=Y ...` for each combination. Weasel's own skipping applies (a
step whose deps and outputs are unchanged is skipped and recorded as such);
`--force` reruns everything.

Per dataset: assets, convert, convert-documents (CoNLL++ and OntoNotes 5,
whose files mark documents); then per variant: train, evaluate,
evaluate-documents (the same two), evaluate-domains (CrossNER only),
package. `calibrate` runs right after spandec's training: it tunes spandec's
O-logit offset on dev (in place) and makes sf_spandec from it. A failed
assets/convert/train step skips the steps that need it; the others go on,
and the exit status is 1 if anything failed.

Sample granularity per dataset (`--granularity auto`): the cpu and converge
budgets train on the project's default (project.yml: `mixed`, chunks of up to
128 tokens, half of them split into sentences; files without document marks,
CrossNER and BC5CDR, give sentences); with the paper budget, CoNLL++ and
OntoNotes 5 are packed into chunks of <= 74 tokens (the paper's ~57-60 words
per sample for them; 819 CoNLL++ test chunks vs. its 817), CrossNER and BC5CDR
are plain sentences (MANIFEST.md). Runs of another granularity than the
project's default live in their own folders, `<dataset>_sentence`,
`<dataset>_chunk<N>` or `<dataset>_mixed<N>` (the project's `suffix` var).

Budgets (`training.max_steps`):
  cpu   = the text of CPU_STEPS batches of CPU_BATCH_SENTENCES sentences, to
          show the whole pipeline works on 2 cores: ceil(CPU_STEPS *
          CPU_BATCH_SENTENCES / train sentences * steps per epoch), which is
          CPU_STEPS for batches of 32 sentences and the same sentences for
          any other batcher or granularity;
  converge = trained by `train-resumable` (checkpoints; a rerun resumes) until
          dev F1 rises by less than 0.2 over two epochs, at most
          CONVERGE_EPOCHS: ceil(CONVERGE_EPOCHS * steps per epoch) steps, so
          the learning rate decays over those epochs; runs live in
          `<run>_converge` folders (corpus, training, metrics);
  paper = the paper's MiniLM schedule, 100 epochs: ceil(100 * steps per epoch).
Steps per epoch come from the [training.batcher] of configs/<config>.cfg:
train samples (corpus/<run>/stats.json) / size for a fixed-size
batch_by_sequence, else the batches that batcher makes of the train set.
A single `spacy project run train` uses --vars.max_steps; the budget only
acts through this script.
"""

import argparse
import functools
import json
import math
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import srsly
from thinc.api import Config

from spacy_spandec import corpus

from run_info import now  # scripts/ is on sys.path

DATASETS = list(corpus.DATASETS)
# spacy_ner (spaCy's own transition-based ner on the same listener),
# token_cls and spandec are trained; sf_spandec is the trained spandec model
# with its span-filter threshold calibrated on dev (one model, two variants).
CONFIGS = ["spacy_ner", "token_cls", "spandec", "sf_spandec"]
TRAINED_AS = {"sf_spandec": "spandec"}
# The benchmarks whose files mark documents: their test set is also scored as
# whole documents (`convert-documents`, `evaluate-documents`), and the paper
# budget packs them into chunks (the others are sentences).
DOCUMENTS = ("conllpp", "ontonotes5")
GRANULARITY = {d: "chunk" if d in DOCUMENTS else "sentence" for d in DATASETS}  # paper budget
DATASET_STEPS = ["assets", "convert", "convert-documents"]
MODEL_STEPS = [
    "train",
    "calibrate",
    "evaluate",
    "evaluate-documents",
    "evaluate-domains",
    "package",
]
CPU_STEPS = 400
CPU_BATCH_SENTENCES = 32
CONVERGE_EPOCHS = 10
PAPER_EPOCHS = 100
PAPER_BATCH_SAMPLES = 64  # the paper's global batch size
PROJECT_DIR = Path(__file__).resolve().parents[1]
# The project's defaults (granularity, max_tokens), owned by project.yml.
PROJECT_VARS = srsly.read_yaml(PROJECT_DIR / "project.yml")["vars"]


def trained_config(config: str) -> Path:
    """configs/<config>.cfg, or spandec's for sf_spandec, which has no config
    of its own (it is spandec's model, calibrated)."""
    return PROJECT_DIR / "configs" / f"{TRAINED_AS.get(config, config)}.cfg"


def batcher_settings(config: str) -> Dict[str, Any]:
    """[training.batcher] of the config that trains `config`; batches of the
    paper's 64 samples if there is no such config."""
    path = trained_config(config)
    if path.exists():
        return dict(Config().from_disk(path, interpolate=False)["training"]["batcher"])
    return {"@batchers": "spacy.batch_by_sequence.v1", "size": PAPER_BATCH_SAMPLES}


def train_stats(run: str) -> Optional[Dict[str, Any]]:
    """corpus/<run>/stats.json's train split; None before `convert`."""
    stats_path = PROJECT_DIR / "corpus" / run / "stats.json"
    if not stats_path.exists():
        return None
    return json.loads(stats_path.read_text())["splits"]["train"]


def steps_per_epoch(config: str, run: str, train: Dict[str, Any]) -> Fraction:
    """Batches in one epoch of corpus/<run>/train.spacy, whose statistics are
    `train`, under `config`'s batcher. A fixed number of samples per batch
    (spaCy's batch_by_sequence) divides the count of stats.json; any other
    batcher (e.g. batch_by_padded, whose batch size depends on the lengths)
    is run over the examples the trainer reads (`counted_batches`, once for
    spandec and the sf_spandec made from it)."""
    settings = batcher_settings(config)
    size = settings.get("size")
    if settings["@batchers"] == "spacy.batch_by_sequence.v1" and isinstance(size, int):
        return Fraction(train["samples"], size)
    trained = TRAINED_AS.get(config, config)
    return Fraction(counted_batches(trained, PROJECT_DIR / "corpus" / run / "train.spacy"))


@functools.lru_cache(maxsize=None)
def counted_batches(config: str, train_path: Path) -> int:
    """Batches of the first epoch of the resumable trainer (`epoch_batches`,
    seed 0) under `config`'s batcher, over the examples it reads from
    `train_path` (`read_train_examples`: re-tokenized, so the lengths a
    padded batcher sees); counted once per config and run, whichever budgets
    ask."""
    from spacy.util import registry

    from spacy_spandec.train import epoch_batches, read_train_examples

    batcher = registry.resolve({"batcher": batcher_settings(config)})["batcher"]
    examples = read_train_examples(trained_config(config), train_path)
    return len(epoch_batches(examples, batcher, 0))


def max_steps(budget: str, run: str, config: str) -> Optional[int]:
    """Training steps for a budget; None if the corpus it needs does not
    exist yet (dry runs before `convert`)."""
    train = train_stats(run)
    if train is None:
        return None
    epoch = steps_per_epoch(config, run, train)
    if budget == "cpu":
        cpu_epochs = Fraction(CPU_STEPS * CPU_BATCH_SENTENCES, train["sentences"])
        return math.ceil(cpu_epochs * epoch)
    epochs = CONVERGE_EPOCHS if budget == "converge" else PAPER_EPOCHS
    return math.ceil(epochs * epoch)


def run_folder(dataset: str, granularity: str, max_tokens: int) -> Tuple[str, Dict[str, Any]]:
    """The suffix of a run's folders and the project vars that make its
    samples: none for the project's default granularity, else e.g.
    `_sentence` or `_chunk74`, so runs of several granularities sit side by side."""
    default = (PROJECT_VARS["granularity"], PROJECT_VARS["max_tokens"])
    variables: Dict[str, Any] = {"dataset": dataset, "granularity": granularity}
    if granularity != "sentence":
        variables["max_tokens"] = max_tokens
    if (granularity, max_tokens) == default:
        return "", variables
    return f"_{granularity}{max_tokens if granularity != 'sentence' else ''}", variables


def run_step(step: str, variables: Dict[str, Any], force: bool, dry_run: bool) -> Dict[str, Any]:
    """Run one project command, echoing its output; returns the timing record."""
    cmd = [sys.executable, "-m", "spacy", "project", "run", step, str(PROJECT_DIR)]
    cmd += [f"--vars.{key}={value}" for key, value in variables.items()]
    cmd += ["--force"] if force else []
    print("$ " + " ".join(cmd), flush=True)
    record: Dict[str, Any] = {"step": step, "vars": variables, "command": ["python"] + cmd[1:]}
    if dry_run:
        return {**record, "returncode": 0, "seconds": 0.0, "skipped": False, "dry_run": True}
    start = time.perf_counter()
    proc = subprocess.Popen(
        cmd, cwd=PROJECT_DIR, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    skipped = False
    assert proc.stdout is not None
    for line in proc.stdout:
        sys.stdout.write(line)
        skipped = skipped or f"Skipping '{step}'" in line
    returncode = proc.wait()
    seconds = round(time.perf_counter() - start, 2)
    return {
        **record,
        "returncode": returncode,
        "seconds": seconds,
        "skipped": skipped,
        "finished": now(),
    }


def expand(chosen: List[str], every: List[str]) -> List[str]:
    """`all` stands for every choice; the rest keep their canonical order."""
    return list(every) if "all" in chosen else [c for c in every if c in chosen]


def model_configs(configs: List[str]) -> List[str]:
    """The configs to run, in order; sf_spandec is calibrated from the spandec
    model, so asking for it alone still trains spandec first."""
    if "sf_spandec" in configs and "spandec" not in configs:
        configs = configs + ["spandec"]
    return [c for c in CONFIGS if c in configs]


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", choices=["cpu", "converge", "paper"], default="cpu")
    parser.add_argument(
        "--datasets",
        nargs="+",
        choices=DATASETS + ["all"],
        default=["all"],
        help="benchmarks to run (`all`: every one); project var `datasets`",
    )
    parser.add_argument(
        "--configs",
        nargs="+",
        choices=CONFIGS + ["all"],
        default=["all"],
        help="variants to run (`all`: every one); sf_spandec also trains spandec, "
        "whose model it calibrates; project var `configs`",
    )
    parser.add_argument("--gpu-id", type=int, default=-1)
    parser.add_argument(
        "--limit", type=int, default=0, help="first K samples per split (smoke runs)"
    )
    parser.add_argument(
        "--granularity",
        choices=["auto", "sentence", "chunk", "mixed"],
        default="auto",
        help="auto: the project's default (mixed) with the cpu and converge budgets, the "
        "paper's chunks for CoNLL++/OntoNotes and sentences for the others with the paper "
        "budget; mixed: half the training chunks whole, the rest as sentences (dev/test: "
        "sentences)",
    )
    parser.add_argument(
        "--max-tokens",
        type=int,
        default=None,
        help="chunk size in tokens (chunk, mixed); default: the project's for its default "
        f"granularity, else the paper's {corpus.DEFAULT_MAX_TOKENS}",
    )
    parser.add_argument(
        "--steps",
        nargs="+",
        choices=DATASET_STEPS + MODEL_STEPS,
        default=DATASET_STEPS + MODEL_STEPS,
        help="run only these steps",
    )
    parser.add_argument("--force", action="store_true", help="rerun steps weasel would skip")
    parser.add_argument("--dry-run", action="store_true", help="print the commands only")
    parser.add_argument(
        "--timings", type=Path, default=PROJECT_DIR / "results" / "summary" / "timings.json"
    )
    parser.add_argument(
        "--run-record",
        type=Path,
        default=PROJECT_DIR / "results" / "summary" / "run_all.json",
        help="where the wall time of this whole invocation is written",
    )
    args = parser.parse_args(argv)
    args.datasets = expand(args.datasets, DATASETS)
    args.configs = expand(args.configs, CONFIGS)

    run_started = time.perf_counter()
    started = now()
    timings: Dict[str, Any] = {}
    if args.timings.exists() and not args.dry_run:
        timings = json.loads(args.timings.read_text())
    failed: List[str] = []

    def run(key: str, step: str, variables: Dict[str, Any]) -> bool:
        record = run_step(step, variables, args.force, args.dry_run)
        record["budget"] = args.budget
        previous = timings.get(key)
        # A skipped rerun keeps the wall time of the run that did the work.
        keep_previous = record.get("skipped") and previous and not previous.get("skipped")
        if not args.dry_run and not keep_previous:
            timings[key] = record
            args.timings.parent.mkdir(parents=True, exist_ok=True)
            args.timings.write_text(json.dumps(timings, indent=1, sort_keys=True) + "\n")
        if record["returncode"] != 0:
            failed.append(key)
            print(
                f"FAILED {key} (exit {record['returncode']}); skipping the steps that need it",
                flush=True,
            )
        return record["returncode"] == 0

    for dataset in args.datasets:
        granularity = args.granularity
        if granularity == "auto":
            paper = args.budget == "paper"
            granularity = GRANULARITY[dataset] if paper else PROJECT_VARS["granularity"]
        max_tokens = args.max_tokens
        if max_tokens is None:
            default = granularity == PROJECT_VARS["granularity"]
            max_tokens = PROJECT_VARS["max_tokens"] if default else corpus.DEFAULT_MAX_TOKENS
        suffix, base = run_folder(dataset, granularity, max_tokens)
        suffix += "_converge" if args.budget == "converge" else ""
        name = dataset + suffix  # the project's ${vars.run}: folder of this run's files
        base.update(limit=args.limit, gpu_id=args.gpu_id)
        if suffix:
            base["suffix"] = suffix
        dataset_steps = [
            step
            for step in DATASET_STEPS
            if step in args.steps and (step != "convert-documents" or dataset in DOCUMENTS)
        ]
        if not all(run(f"{name}/-/{step}", step, base) for step in dataset_steps):
            continue
        for config in model_configs(args.configs):
            steps = max_steps(args.budget, name, config)
            variables = {
                **base,
                "config": config,
                "max_steps": steps if steps is not None else "AFTER_CONVERT",
            }
            if steps is not None:
                # converge: twice an epoch, besides the evaluation at each epoch's end
                evals = {"cpu": 2, "converge": 2 * CONVERGE_EPOCHS}.get(args.budget, 10)
                variables["eval_frequency"] = max(1, steps // evals)
            if args.budget == "converge":
                variables["max_epochs"] = CONVERGE_EPOCHS
            requested = config in args.configs
            for step in MODEL_STEPS:
                if step not in args.steps or (step == "evaluate-domains" and dataset != "crossner"):
                    continue
                if step == "evaluate-documents" and dataset not in DOCUMENTS:
                    continue
                if step in ("train", "calibrate") and config == "sf_spandec":
                    continue  # sf_spandec is made from spandec by `calibrate`, never trained
                if step == "calibrate" and config != "spandec":
                    continue
                if not requested and step not in ("train", "calibrate"):
                    continue  # spandec only to give sf_spandec its model
                # `calibrate` tunes spandec's O-logit offset in place and makes
                # sf_spandec, so it runs right after spandec's training,
                # before either is evaluated.
                key, step_vars, command = f"{name}/{config}/{step}", variables, step
                if step == "train" and args.budget == "converge":
                    command = "train-resumable"
                if step == "calibrate":
                    key, step_vars = (
                        f"{name}/sf_spandec/{step}",
                        {**variables, "config": "sf_spandec"},
                    )
                if not run(key, command, step_vars) and step in ("train", "calibrate"):
                    break  # evaluate and package need the trained model
        if args.budget == "converge" and "evaluate" in args.steps:
            run(f"{name}/-/convergence-curves", "convergence-curves", base)
    if failed:
        print(f"{len(failed)} step(s) failed: {', '.join(failed)}")
    if not args.dry_run:
        # The sum of the step times misses what runs between steps and mixes
        # runs of several invocations; this is the one uninterrupted run.
        seconds = round(time.perf_counter() - run_started, 2)
        record = {
            "argv": sys.argv[1:] if argv is None else list(argv),
            "budget": args.budget,
            "datasets": args.datasets,
            "configs": args.configs,
            "started": started,
            "finished": now(),
            "seconds": seconds,
            "failed": failed,
        }
        args.run_record.parent.mkdir(parents=True, exist_ok=True)
        args.run_record.write_text(json.dumps(record, indent=1) + "\n")
        print(f"whole run: {seconds:.0f} s ({seconds / 3600:.2f} h), recorded in {args.run_record}")
    print(f"timings: {args.timings}" if not args.dry_run else "dry run: nothing executed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
