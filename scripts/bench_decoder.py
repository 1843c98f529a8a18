"""Time the encoder against the span decoder on CPU, in one process.

Why: on CPU a naive decoder over every candidate span costs more than the
encoder (DESIGN.md); this checks that ours does not. It runs the pipeline's
transformer and its spandec_ner on the same batches, alternating, and
reports the median time of each and their ratio, with SF off and on.

    python scripts/bench_decoder.py [--model training/conllpp/spandec/model-best] \
        [--texts corpus/conllpp/test.spacy] [--batch-size 8] [--repeats 5]

Without --model it builds the default pipeline (offline MiniLM-L6, 5 layers)
with an untrained decoder; SF pruning then needs --sf-threshold and prunes
at random, so use a trained model for the SF row.
"""
import argparse
import json
import statistics
import time
from pathlib import Path
from typing import List, Optional, Sequence

import spacy
import torch
from spacy.tokens import Doc, DocBin
from spacy.training import Example

from spacy_spandec.calibrate import find_component

SAMPLE = (
    "The European Commission said on Thursday it disagreed with German advice to "
    "consumers to shun British lamb until scientists determine whether mad cow "
    "disease can be transmitted to sheep , Peter Moser told Reuters in Brussels ."
)


def default_pipeline() -> spacy.Language:
    config = spacy.util.load_config(Path(__file__).resolve().parents[1] / "configs" / "spandec.cfg")
    nlp = spacy.util.load_model_from_config(config, auto_fill=True)
    doc = nlp.make_doc(SAMPLE)
    doc.ents = [doc.char_span(SAMPLE.index("Peter"), SAMPLE.index(" told"), label="PER")]
    nlp.initialize(lambda: [Example(nlp.make_doc(SAMPLE), doc)])
    return nlp


def median_ms(values: Sequence[float]) -> float:
    return 1000 * statistics.median(values)


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--texts", type=Path, default=None, help="DocBin whose texts to use")
    parser.add_argument("--n-docs", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--sf-threshold", type=float, default=None, help="default: the model's")
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args(argv)
    nlp = spacy.load(args.model) if args.model else default_pipeline()
    name = find_component(nlp)
    decoder = nlp.get_pipe(name)
    encoder_names = nlp.pipe_names[: nlp.pipe_names.index(name)]
    if args.texts:
        texts = [d.text for d in DocBin().from_disk(args.texts).get_docs(nlp.vocab)][: args.n_docs]
    else:
        texts = [SAMPLE] * args.n_docs
    docs = [nlp.make_doc(t) for t in texts]
    batches = [docs[i : i + args.batch_size] for i in range(0, len(docs), args.batch_size)]
    thresholds = {"SpanDec (sf_threshold=0)": 0.0}
    sf = args.sf_threshold if args.sf_threshold is not None else decoder.sf_threshold
    if sf > 0:
        thresholds[f"SF-SpanDec (sf_threshold={sf:g})"] = sf
    rows = {}
    with torch.inference_mode():
        for label, threshold in thresholds.items():
            decoder.sf_threshold = threshold
            enc_times, dec_times, kept, cands = [], [], 0, 0
            for repeat in range(args.repeats + 1):  # first pass is warm-up
                enc_total = dec_total = 0.0
                for batch in batches:
                    batch = [Doc(nlp.vocab, words=[t.text for t in d], spaces=[bool(t.whitespace_) for t in d]) for d in batch]
                    start = time.perf_counter()
                    for enc in encoder_names:
                        batch = list(nlp.get_pipe(enc).pipe(batch, batch_size=len(batch)))
                    middle = time.perf_counter()
                    batch = list(decoder.pipe(batch, batch_size=len(batch)))
                    end = time.perf_counter()
                    enc_total += middle - start
                    dec_total += end - middle
                    if repeat == 0:
                        for d in batch:
                            kept += d.spans[decoder.spans_key].attrs["n_kept"]
                            cands += d.spans[decoder.spans_key].attrs["n_candidates"]
                if repeat:
                    enc_times.append(enc_total)
                    dec_times.append(dec_total)
            rows[label] = {
                "encoder_ms_per_batch": median_ms(enc_times) / len(batches),
                "decoder_ms_per_batch": median_ms(dec_times) / len(batches),
                "decoder_over_encoder": statistics.median(d / e for d, e in zip(dec_times, enc_times)),
                "kept_fraction": kept / max(cands, 1),
            }
    n_words = sum(len(d) for d in docs)
    result = {
        "model": str(args.model) if args.model else "untrained default pipeline",
        "encoder_layers": encoder_names,
        "batch_size": args.batch_size,
        "docs": len(docs),
        "words_per_doc": n_words / max(len(docs), 1),
        "repeats": args.repeats,
        "torch_threads": torch.get_num_threads(),
        "date": time.strftime("%Y-%m-%d"),
        "rows": rows,
    }
    print(json.dumps(result, indent=2))
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
