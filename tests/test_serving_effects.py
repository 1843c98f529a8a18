"""The serving options really change the computation: a bf16 view that
silently ran in float32, or an encoder that `quantize_encoder` left in float,
would pass checks that only compare outputs with the float model's."""
import numpy
import torch

from spacy_spandec.layers.spandec_model import decoder_net
from spacy_spandec.serving import quantize_encoder

from conftest import TRAIN_DATA, make_bert_nlp, make_examples


def upstream_docs(nlp, texts):
    """Docs that have run through every component before `spandec_ner`."""
    docs = [nlp.make_doc(text) for text in texts]
    for _, proc in nlp.pipeline[:-1]:
        docs = list(proc.pipe(docs))
    return docs


def test_bfloat16_changes_the_logits_a_little(trained_nlp):
    ner = trained_nlp.get_pipe("spandec_ner")
    docs = upstream_docs(trained_nlp, [text for text, _ in TRAIN_DATA[:8]])
    float_logits = ner.model.ops.to_numpy(ner.predict(docs).logits)
    try:
        ner.inference_dtype = "bfloat16"
        bf16_logits = ner.model.ops.to_numpy(ner.predict(docs).logits)
    finally:
        ner.inference_dtype = "float32"
    assert bf16_logits.shape == float_logits.shape
    # The view really ran in bf16 (8 mantissa bits) ...
    assert (bf16_logits != float_logits).any()
    # ... and stayed close to float32.
    assert abs(bf16_logits - float_logits).max() < 0.05 * abs(float_logits).max()
    # The float net's own weights are untouched.
    assert all(p.dtype == torch.float32 for p in decoder_net(ner.model).parameters())


def test_quantize_encoder_changes_the_encoder_output_a_little(tiny_bert_dir):
    nlp = make_bert_nlp(tiny_bert_dir)
    nlp.initialize(lambda: make_examples(nlp))
    texts = [text for text, _ in TRAIN_DATA[:6]]
    before = [doc._.trf_data.tensors[0].copy() for doc in nlp.pipe(texts)]
    assert quantize_encoder(nlp) == ["transformer"]
    after = [doc._.trf_data.tensors[0] for doc in nlp.pipe(texts)]
    for b, a in zip(before, after):
        assert a.shape == b.shape
        # int8 weights: the hidden states move, but not far.
        assert not numpy.array_equal(a, b)
        assert abs(a - b).max() < 0.1 * abs(b).max()
