"""Where the time goes: encoder against head, per pipeline, in one process.

Why: the speed targets compare whole pipelines, but what can be changed is
either the shared encoder path (tokenization, alignment, transformer, pooling)
or the head (tagger + BIO decoding, or the span decoder). This times each
pipeline twice on the same raw texts, once whole and once with its head
disabled (the transformer still runs), variants alternating, median of
`--repeats`, and prints the head's share. With `--op-profile` it also lists
the span decoder's most expensive PyTorch ops (torch.profiler).

    python scripts/dev/profile_split.py --token-cls training/conllpp/token_cls/model-best \\
        --spandec training/conllpp/sf_spandec/model-best --texts corpus/conllpp/test.spacy \\
        --output results/profile/split.json
"""

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any, Dict, List, Tuple

import spacy
import torch
from spacy.language import Language
from spacy.tokens import DocBin

HEADS = {"token_cls": ["tagger", "spandec_bio_ents"], "spandec": ["spandec_ner"]}


def time_pipe(nlp: Language, texts: List[str], batch_size: int, disable: List[str]) -> float:
    """Milliseconds per doc of `nlp.pipe` with `disable`d components."""
    with nlp.select_pipes(disable=disable):
        start = time.perf_counter()
        for _ in nlp.pipe(texts, batch_size=batch_size):
            pass
        return 1000 * (time.perf_counter() - start) / len(texts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--token-cls", required=True)
    parser.add_argument(
        "--spandec",
        required=True,
        help="a trained spandec_ner pipeline (its sf_threshold is the SF row)",
    )
    parser.add_argument("--texts", required=True)
    parser.add_argument("--n-docs", type=int, default=400)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--op-profile", action="store_true")
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()

    tok = spacy.load(args.token_cls)
    span = spacy.load(args.spandec)
    ner = span.get_pipe("spandec_ner")
    sf_threshold = ner.sf_threshold
    texts = [d.text for d in DocBin().from_disk(args.texts).get_docs(tok.vocab)][: args.n_docs]
    # (label, pipeline, head components, sf_threshold, inference_dtype)
    variants: List[Tuple[str, Language, List[str], float, str]] = [
        ("token_cls", tok, HEADS["token_cls"], 0.0, "float32"),
        ("spandec", span, HEADS["spandec"], 0.0, "float32"),
        ("spandec bf16", span, HEADS["spandec"], 0.0, "bfloat16"),
        ("sf_spandec", span, HEADS["spandec"], sf_threshold, "float32"),
        ("sf_spandec bf16", span, HEADS["spandec"], sf_threshold, "bfloat16"),
    ]

    def use(threshold: float, dtype: str) -> None:
        ner.sf_threshold = threshold
        ner.inference_dtype = dtype

    for label, nlp, head, threshold, dtype in variants:  # warm-up
        use(threshold, dtype)
        time_pipe(nlp, texts[:64], args.batch_size, [])
    times: Dict[str, Dict[str, List[float]]] = {
        v[0]: {"whole": [], "encoder": []} for v in variants
    }
    for _ in range(args.repeats):
        for label, nlp, head, threshold, dtype in variants:
            use(threshold, dtype)
            times[label]["whole"].append(time_pipe(nlp, texts, args.batch_size, []))
            times[label]["encoder"].append(time_pipe(nlp, texts, args.batch_size, head))
    rows: Dict[str, Any] = {}
    reference = statistics.median(times["token_cls"]["whole"])
    for label, t in times.items():
        whole, encoder = statistics.median(t["whole"]), statistics.median(t["encoder"])
        rows[label] = {
            "ms_per_doc": round(whole, 3),
            "encoder_ms_per_doc": round(encoder, 3),
            "head_ms_per_doc": round(whole - encoder, 3),
            "vs_token_cls": round(reference / whole, 3),
            "whole_runs": [round(x, 3) for x in t["whole"]],
            "encoder_runs": [round(x, 3) for x in t["encoder"]],
        }
        print(
            f"{label:16} {whole:6.2f} ms/doc = encoder {encoder:5.2f} + head {whole - encoder:5.2f}"
            f"  ({reference / whole:.2f}x token_cls)"
        )
    result: Dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "torch_threads": torch.get_num_threads(),
        "n_docs": len(texts),
        "batch_size": args.batch_size,
        "repeats": args.repeats,
        "sf_threshold": sf_threshold,
        "rows": rows,
    }
    if args.op_profile:
        result["decoder_ops"] = op_profile(span, ner, texts, args.batch_size)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(result, indent=1) + "\n")


def top_ops(prof: Any, n: int) -> List[Dict[str, Any]]:
    """The `n` op kinds with the most self CPU time in a torch.profiler run."""
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events) or 1.0
    return [
        {
            "op": e.key,
            "self_ms": round(e.self_cpu_time_total / 1000, 1),
            "share": round(e.self_cpu_time_total / total, 3),
            "calls": e.count,
        }
        for e in events[:n]
    ]


def op_profile(
    nlp: Language, ner: Any, texts: List[str], batch_size: int
) -> Dict[str, List[Dict[str, Any]]]:
    """The span decoder's top PyTorch ops (self CPU time) for each dtype, SF off."""
    from torch.profiler import profile

    docs = list(nlp.pipe(texts, batch_size=batch_size, disable=HEADS["spandec"]))
    batches = [docs[i : i + batch_size] for i in range(0, len(docs), batch_size)]
    out: Dict[str, List[Dict[str, Any]]] = {}
    for dtype in ("float32", "bfloat16"):
        ner.sf_threshold, ner.inference_dtype = 0.0, dtype
        for batch in batches[:4]:
            ner.predict(batch)
        with profile() as prof:
            for batch in batches:
                ner.predict(batch)
        out[dtype] = top_ops(prof, 12)
        print(dtype, ", ".join(f"{r['op']} {100 * r['share']:.0f}%" for r in out[dtype][:6]))
    return out


if __name__ == "__main__":
    main()
