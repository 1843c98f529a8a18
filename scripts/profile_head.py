"""The `spandec_ner` head alone: time, stages and PyTorch op count per batch.

Why: the speed targets hinge on the head's fixed cost per batch, which is a
few milliseconds spread over many small steps. Timing whole pipelines cannot
say which step; this runs the transformer once on the test texts, keeps its
output on the docs, then runs only the head on those docs (`predict` +
`set_annotations`, as `nlp.pipe` does), so repeated passes measure the head
and nothing else.

    python scripts/profile_head.py training/conllpp/sf_spandec/model-best corpus/conllpp/test.spacy \\
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
from pathlib import Path
from typing import Any, Dict, List

import spacy
import torch
from spacy.tokens import Doc, DocBin

from spacy_spandec.layers import decoder as decoder_module


def run_head(ner: Any, batches: List[List[Doc]]) -> None:
    for batch in batches:
        ner.set_annotations(batch, ner.predict(batch))


def op_count(ner: Any, batches: List[List[Doc]]) -> Dict[str, Any]:
    """Top-level aten calls per batch (nested calls not counted twice), and
    the op kinds with the largest share of self CPU time."""
    from torch.profiler import profile

    with profile() as prof:
        run_head(ner, batches)
    top_level = [e for e in prof.events() if e.name.startswith("aten::") and (
        e.cpu_parent is None or not e.cpu_parent.name.startswith("aten::"))]
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events) or 1.0
    return {
        "aten_calls_per_batch": round(len(top_level) / len(batches), 1),
        "self_cpu_share": {e.key: round(e.self_cpu_time_total / total, 3) for e in events[:10]},
    }


def mlp_floor(ner: Any, rows: int, batch_size: int) -> Dict[str, float]:
    """ms per doc of the decoder's per-span layers alone (output projection,
    MLP, classifier) on `rows` random rows, float32 and the bf16 serving
    copy: the part of the head that is arithmetic, not overhead, at this
    kept fraction."""
    from spacy_spandec.layers.spandec_model import decoder_net
    from spacy_spandec.serving import bfloat16_decoder

    net = decoder_net(ner.model)
    out: Dict[str, float] = {}
    for name, view in (("float32", net), ("bfloat16", bfloat16_decoder(net))):
        dec = view.spandec["decoder"]
        x = torch.randn(max(rows, 2), dec.width)

        def layers() -> torch.Tensor:
            hidden = x + dec.o_proj(x)
            hidden = hidden + dec.mlp(dec.norm_mlp(hidden))
            return dec.classifier(hidden.reshape(-1, 2 * dec.width))

        with torch.no_grad():
            for _ in range(20):
                layers()
            times = []
            for _ in range(7):
                start = time.perf_counter()
                for _ in range(50):
                    layers()
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
    parser.add_argument("--sf-threshold", type=float, default=None, help="default: the pipeline's own")
    parser.add_argument("--inference-dtype", default=None, help="default: the pipeline's own")
    parser.add_argument("--stages", action="store_true", help="also print a pyinstrument profile")
    parser.add_argument("--compare-grouped", action="store_true",
                        help="alternate with the grouped attention path forced (no fused SDPA call), same process")
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
    batches = [docs[i : i + args.batch_size] for i in range(0, len(docs), args.batch_size)]
    run_head(ner, batches[:8])  # warm-up: serving view, allocator, caches
    fused_bound = decoder_module._MAX_FUSED_ELEMENTS
    runs, grouped_runs = [], []
    for _ in range(args.repeats):
        for forced_grouped in ([False, True] if args.compare_grouped else [False]):
            decoder_module._MAX_FUSED_ELEMENTS = 0 if forced_grouped else fused_bound
            start = time.perf_counter()
            run_head(ner, batches)
            (grouped_runs if forced_grouped else runs).append(1000 * (time.perf_counter() - start) / len(docs))
    decoder_module._MAX_FUSED_ELEMENTS = fused_bound
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
        **op_count(ner, batches),
    }
    if grouped_runs:
        result["grouped_head_ms_per_doc"] = round(statistics.median(grouped_runs), 3)
        result["grouped_head_ms_per_doc_runs"] = [round(r, 3) for r in grouped_runs]
    rows = 2 * round(kept / len(batches))  # two marker rows per decoded span
    result["decoded_rows_per_batch"] = rows
    result["per_span_layers_ms_per_doc"] = mlp_floor(ner, rows, args.batch_size)
    print(json.dumps(result, indent=1))
    if args.stages:
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.0002)
        with profiler:
            run_head(ner, batches)
        print(profiler.output_text(unicode=False, color=False, show_all=False))
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
