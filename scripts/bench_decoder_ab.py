"""Time the decoder at an earlier commit against the current one, beside token
classification, in one process.

Why: a decoder change must be measured against the code it replaces on the
same machine in the same session, and against the paper's baseline. This
loads the trained SpanDec and token-classification pipelines once, swaps the
decoder's classes between the version at `--old-rev` (read with `git show`)
and the installed one, checks that both give identical entities, and times
`nlp.pipe` on raw test texts, variants alternating, median of `--repeats`.

    python scripts/bench_decoder_ab.py --old-rev eec37ce \
        [--spandec training/conllpp/spandec/model-best] \
        [--token-cls training/conllpp/token_cls/model-best] \
        [--texts corpus/conllpp/test.spacy] [--n-docs 600] [--output results/decoder_ab/ab.json]
"""
import argparse
import importlib.util
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List

import spacy
from spacy.tokens import DocBin

import spacy_spandec.pipeline_component as component_module
from spacy_spandec.layers.decoder import SpanDecNet, SpanDecoder
from spacy_spandec.layers.spandec_model import decoder_net

PROJECT_DIR = Path(__file__).resolve().parents[1]


def load_old_decoder(rev: str) -> Any:
    """spacy_spandec/layers/decoder.py as it was at `rev`, as a module."""
    source = subprocess.run(
        ["git", "show", f"{rev}:spacy_spandec/layers/decoder.py"],
        cwd=PROJECT_DIR, check=True, capture_output=True, text=True,
    ).stdout
    source = source.replace("from .span_filter import", "from spacy_spandec.layers.span_filter import")
    path = Path(tempfile.mkdtemp()) / "old_decoder.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("old_decoder", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--old-rev", required=True)
    parser.add_argument("--spandec", default="training/conllpp/spandec/model-best")
    parser.add_argument("--token-cls", default="training/conllpp/token_cls/model-best")
    parser.add_argument("--texts", default="corpus/conllpp/test.spacy")
    parser.add_argument("--n-docs", type=int, default=600)
    parser.add_argument("--sf-threshold", type=float, default=0.5)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[8, 64])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()

    old = load_old_decoder(args.old_rev)
    tok = spacy.load(args.token_cls)
    nlp = spacy.load(args.spandec)
    ner = nlp.get_pipe("spandec_ner")
    texts = [d.text for d in DocBin().from_disk(args.texts).get_docs(nlp.vocab)][: args.n_docs]
    net = decoder_net(ner.model)
    decoder = net.spandec["decoder"]
    current_view = component_module.serving_view

    def use(version: str, threshold: float) -> None:
        ner.sf_threshold = threshold
        if version == "old":
            decoder.__class__, net.__class__ = old.SpanDecoder, old.SpanDecNet
            component_module.serving_view = lambda net, dtype: net
        else:
            decoder.__class__, net.__class__ = SpanDecoder, SpanDecNet
            component_module.serving_view = current_view

    variants: Dict[str, Callable[[], spacy.Language]] = {"token_cls": lambda: tok}
    for version in ("old", "new"):
        for model, threshold in (("spandec", 0.0), ("sf_spandec", args.sf_threshold)):
            variants[f"{model}_{version}"] = lambda v=version, t=threshold: (use(v, t), nlp)[1]
    for threshold in (0.0, args.sf_threshold):
        ents: List[Any] = []
        for version in ("old", "new"):
            use(version, threshold)
            ents.append([[(e.start, e.end, e.label_) for e in d.ents] for d in nlp.pipe(texts, batch_size=8)])
        if ents[0] != ents[1]:
            sys.exit(f"old and new decoders disagree at sf_threshold={threshold}")
    result: Dict[str, Any] = {"old_rev": args.old_rev, "n_docs": len(texts), "sf_threshold": args.sf_threshold,
                              "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "batches": {}}
    for batch_size in args.batch_sizes:
        seconds: Dict[str, List[float]] = {name: [] for name in variants}
        for _ in range(args.repeats):
            for name, get in variants.items():
                pipe = get()
                list(pipe.pipe(texts[:64], batch_size=batch_size))
                start = time.perf_counter()
                list(pipe.pipe(texts, batch_size=batch_size))
                seconds[name].append(time.perf_counter() - start)
        base = statistics.median(seconds["token_cls"])
        result["batches"][batch_size] = {
            name: {"docs_per_s": round(len(texts) / statistics.median(s), 1),
                   "x_token_cls": round(base / statistics.median(s), 3),
                   "seconds": [round(x, 3) for x in s]}
            for name, s in seconds.items()
        }
        print(batch_size, json.dumps(result["batches"][batch_size]), flush=True)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
