"""The `spandec_ner` head alone: time, stages and PyTorch op count per batch.

Why: the speed targets hinge on the head's fixed cost per batch, which is a
few milliseconds spread over many small steps. Timing whole pipelines cannot
say which step; this runs the transformer once on the test texts, keeps its
output on the docs, then runs only the head on those docs (`predict` +
`set_annotations`, as `nlp.pipe` does), so repeated passes measure the head
and nothing else.

    python scripts/dev/profile_head.py training/conllpp/sf_spandec/model-best corpus/conllpp/test.spacy \\
        --n-docs 400 --batch-size 8 --output results/profile/head.json

Reported: ms per doc (median of `--repeats` passes, with min-max), the
aten-op calls per batch that torch.profiler counts (a count, so unaffected
by other load on the machine), and with `--stages` the share of each Python
function from pyinstrument (sampling; a guide to where to look, not a
measurement to report).
"""

import argparse
import json
import statistics
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Dict, List

import spacy
import torch
from spacy.tokens import Doc, DocBin

from spacy_spandec.layers.spandec_model import decoder_net
from spacy_spandec.serving import bfloat16_decoder, serving_view

from profile_split import top_ops  # scripts/dev/ is on sys.path


def run_head(ner: Any, docs: List[Doc], batch_size: int) -> None:
    """The head as `nlp.pipe` runs it: predict + set_annotations per batch."""
    for _ in ner.pipe(docs, batch_size=batch_size):
        pass


def op_count(ner: Any, docs: List[Doc], batch_size: int) -> Dict[str, Any]:
    """Top-level aten calls per batch (nested calls not counted twice), and
    the op kinds with the largest share of self CPU time."""
    from torch.profiler import profile

    with profile() as prof:
        run_head(ner, docs, batch_size)
    top_level = [
        e
        for e in prof.events()
        if e.name.startswith("aten::")
        and (e.cpu_parent is None or not e.cpu_parent.name.startswith("aten::"))
    ]
    n_batches = -(-len(docs) // batch_size)
    return {
        "aten_calls_per_batch": round(len(top_level) / n_batches, 1),
        "self_cpu_share": {op["op"]: op["share"] for op in top_ops(prof, 10)},
    }


def span_head_ms(ner: Any, rows: int, batch_size: int) -> Dict[str, float]:
    """ms per doc of the decoder's per-span layers alone (`_SpanDecoderBase.span_head`:
    output projection, MLP, classifier) on `rows` random rows, float32 and
    the bf16 serving copy: the part of the head that is arithmetic, not
    overhead, at this kept fraction."""
    net = decoder_net(ner.model)
    out: Dict[str, float] = {}
    for name, view in (("float32", net), ("bfloat16", bfloat16_decoder(net))):
        dec = view.decoder
        x = torch.randn(max(rows // 2, 1), 2, dec.width)
        with torch.no_grad():
            for _ in range(20):
                dec.span_head(x, x)
            times = []
            for _ in range(7):
                start = time.perf_counter()
                for _ in range(50):
                    dec.span_head(x, x)
                times.append((time.perf_counter() - start) / 50)
        out[name] = round(1000 * statistics.median(times) / batch_size, 3)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pipeline")
    parser.add_argument("texts", help="a .spacy file; its first --n-docs texts are used")
    parser.add_argument("--n-docs", type=int, default=400)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--sf-threshold", type=float, default=None, help="default: the pipeline's own"
    )
    parser.add_argument("--inference-dtype", default=None, help="default: the pipeline's own")
    parser.add_argument("--stages", action="store_true", help="also print a pyinstrument profile")
    parser.add_argument(
        "--compare-grouped",
        action="store_true",
        help="alternate with the grouped attention path forced (no fused SDPA call), same process",
    )
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()

    nlp = spacy.load(args.pipeline)
    ner = nlp.get_pipe("spandec_ner")
    if args.sf_threshold is not None:
        ner.sf_threshold = args.sf_threshold
    if args.inference_dtype is not None:
        ner.inference_dtype = args.inference_dtype
    texts = [d.text for d in DocBin().from_disk(args.texts).get_docs(nlp.vocab)][: args.n_docs]
    docs = list(nlp.pipe(texts, batch_size=args.batch_size, disable=["spandec_ner"]))
    n_batches = -(-len(docs) // args.batch_size)
    run_head(
        ner, docs[: 8 * args.batch_size], args.batch_size
    )  # warm-up: serving view, allocator, caches
    # The decoder predict() runs: the serving view's, built by the warm-up.
    serving_decoder = serving_view(decoder_net(ner.model), ner.inference_dtype).net.decoder
    budget = serving_decoder.budget
    runs, grouped_runs = [], []
    for _ in range(args.repeats):
        for forced_grouped in [False, True] if args.compare_grouped else [False]:
            serving_decoder.budget = replace(budget, fused_elements=0) if forced_grouped else budget
            start = time.perf_counter()
            run_head(ner, docs, args.batch_size)
            (grouped_runs if forced_grouped else runs).append(
                1000 * (time.perf_counter() - start) / len(docs)
            )
    serving_decoder.budget = budget
    kept = sum(d.spans[ner.spans_key].attrs["n_kept"] for d in docs)
    candidates = sum(d.spans[ner.spans_key].attrs["n_candidates"] for d in docs)
    result: Dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "pipeline": args.pipeline,
        "torch_threads": torch.get_num_threads(),
        "n_docs": len(docs),
        "batch_size": args.batch_size,
        "sf_threshold": ner.sf_threshold,
        "inference_dtype": ner.inference_dtype,
        "kept_fraction": round(kept / max(candidates, 1), 4),
        "head_ms_per_doc": round(statistics.median(runs), 3),
        "head_ms_per_doc_runs": [round(r, 3) for r in runs],
        **op_count(ner, docs, args.batch_size),
    }
    if grouped_runs:
        result["grouped_head_ms_per_doc"] = round(statistics.median(grouped_runs), 3)
        result["grouped_head_ms_per_doc_runs"] = [round(r, 3) for r in grouped_runs]
    rows = 2 * round(kept / n_batches)  # two marker rows per decoded span
    result["decoded_rows_per_batch"] = rows
    result["per_span_layers_ms_per_doc"] = span_head_ms(ner, rows, args.batch_size)
    print(json.dumps(result, indent=1))
    if args.stages:
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.0002)
        with profiler:
            run_head(ner, docs, args.batch_size)
        print(profiler.output_text(unicode=False, color=False, show_all=False))
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
