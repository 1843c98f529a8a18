"""int8 / bf16 serving views of the decoder, and int8 encoder quantization."""

import pickle

import numpy
import pytest
import spacy
import torch

from spacy_spandec.layers.spandec_model import decoder_net
from spacy_spandec.serving import INFERENCE_DTYPES, quantize_encoder, serving_view

from conftest import TRAIN_DATA, char_spans, make_bert_nlp, make_cnn_nlp, make_examples, train


def ents(nlp, texts):
    return [[(e.start_char, e.end_char, e.label_) for e in doc.ents] for doc in nlp.pipe(texts)]


def net_of(nlp):
    return decoder_net(nlp.get_pipe("spandec_ner").model)


def upstream_docs(nlp, texts):
    """Docs that have run through every component before `spandec_ner`."""
    docs = [nlp.make_doc(text) for text in texts]
    for _, proc in nlp.pipeline[:-1]:
        docs = list(proc.pipe(docs))
    return docs


@pytest.mark.parametrize("dtype", ["int8", "bfloat16"])
def test_serving_dtype_keeps_overfitted_predictions(trained_dir, dtype):
    texts = [text for text, _ in TRAIN_DATA]
    float_nlp = spacy.load(trained_dir)
    nlp = spacy.load(
        trained_dir, config={"components": {"spandec_ner": {"inference_dtype": dtype}}}
    )
    assert nlp.get_pipe("spandec_ner").inference_dtype == dtype
    expected = ents(float_nlp, texts)
    assert [sorted(e) for e in expected] == [
        sorted(char_spans(text, spans)) for text, spans in TRAIN_DATA
    ]
    assert ents(nlp, texts) == expected


def test_int8_view_quantizes_only_per_span_linears(trained_nlp):
    net = net_of(trained_nlp)
    view = serving_view(net, "int8")
    assert view is not net
    assert serving_view(net, "int8") is view
    modules = dict(view.named_modules())
    kinds = {
        name.rsplit("spandec.decoder.", 1)[-1]: type(m).__name__ for name, m in modules.items()
    }
    for name in ("o_proj", "mlp.0", "mlp.3", "classifier"):
        assert "quantized" in type(modules[f"net.spandec.decoder.{name}"]).__module__
    for name in ("q_proj", "k_proj", "v_proj"):
        assert kinds[name] == "Linear"
    # The float net itself is untouched.
    assert all(type(m) is not torch.ao.nn.quantized.dynamic.Linear for m in net.modules())


def test_int8_scores_close_to_float(trained_nlp):
    ner = trained_nlp.get_pipe("spandec_ner")
    docs = upstream_docs(trained_nlp, [text for text, _ in TRAIN_DATA[:8]])
    float_logits = ner.model.ops.to_numpy(ner.predict(docs).logits)
    try:
        ner.inference_dtype = "int8"
        int8_logits = ner.model.ops.to_numpy(ner.predict(docs).logits)
    finally:
        ner.inference_dtype = "float32"
    assert int8_logits.shape == float_logits.shape
    assert abs(int8_logits - float_logits).max() < 0.1 * abs(float_logits).max()
    assert (int8_logits != float_logits).any()


def test_saving_a_serving_pipeline_keeps_float_weights(trained_dir, tmp_path):
    nlp = spacy.load(
        trained_dir, config={"components": {"spandec_ner": {"inference_dtype": "int8"}}}
    )
    nlp("Ann Smith lives in Paris .")
    nlp.to_disk(tmp_path / "p")
    assert (tmp_path / "p" / "spandec_ner" / "model").read_bytes() == (
        trained_dir / "spandec_ner" / "model"
    ).read_bytes()
    nlp2 = spacy.load(tmp_path / "p")
    assert nlp2.get_pipe("spandec_ner").inference_dtype == "int8"
    nlp3 = pickle.loads(pickle.dumps(nlp))
    texts = [text for text, _ in TRAIN_DATA[:6]]
    assert ents(nlp3, texts) == ents(nlp, texts) == ents(nlp2, texts)


def test_training_refreshes_the_int8_view():
    nlp = make_cnn_nlp(inference_dtype="int8")
    examples = make_examples(nlp)
    train(nlp, examples, n_updates=1)
    nlp("Ann Smith lives in Paris .")
    net = net_of(nlp)
    before = serving_view(net, "int8")
    train_more = nlp.resume_training()
    nlp.update(examples, sgd=train_more)
    after = serving_view(net_of(nlp), "int8")
    assert after is not before


def test_float_view_is_cached_and_follows_weight_changes(trained_nlp):
    """The float32 view computes the decoder's weight-only tables once; a
    weight changed in place by torch must not leave stale predictions."""
    ner = trained_nlp.get_pipe("spandec_ner")
    net = net_of(trained_nlp)
    view = serving_view(net, "float32")
    assert view is not net and serving_view(net, "float32") is view
    docs = upstream_docs(trained_nlp, [text for text, _ in TRAIN_DATA[:4]])
    before = ner.model.ops.to_numpy(ner.predict(docs).logits)
    decoder = net.spandec["decoder"]
    original = decoder.m_start.detach().clone()
    try:
        with torch.no_grad():
            decoder.m_start.add_(1.0)
        assert serving_view(net, "float32") is not view
        changed = ner.model.ops.to_numpy(ner.predict(docs).logits)
        with torch.no_grad():
            expected = decoder.query_tables()["queries"]
        assert torch.equal(
            serving_view(net, "float32")._tables[(False, torch.get_autocast_dtype("cpu"))][
                "queries"
            ],
            expected,
        )
    finally:
        with torch.no_grad():
            decoder.m_start.copy_(original)
    assert abs(changed - before).max() > 1e-4
    restored = ner.model.ops.to_numpy(ner.predict(docs).logits)
    assert abs(restored - before).max() < 1e-5


def test_bad_inference_dtype():
    with pytest.raises(ValueError, match="inference_dtype must be one of"):
        make_cnn_nlp(inference_dtype="fp16")
    nlp = make_cnn_nlp()
    with pytest.raises(ValueError, match="int8"):
        nlp.get_pipe("spandec_ner").inference_dtype = "int4"
    assert set(INFERENCE_DTYPES) == {"float32", "int8", "bfloat16"}


def test_quantize_encoder(tiny_bert_dir):
    nlp = make_bert_nlp(tiny_bert_dir)
    train(nlp, make_examples(nlp), n_updates=2)
    texts = [text for text, _ in TRAIN_DATA[:6]]
    before = [doc._.trf_data.tensors[0].copy() for doc in nlp.pipe(texts)]
    assert quantize_encoder(nlp) == ["transformer"]
    hf = nlp.get_pipe("transformer").model.walk()
    linear_types = {
        type(m).__module__
        for node in hf
        for shim in getattr(node, "shims", ())
        for m in shim._model.modules()
        if "Linear" in type(m).__name__
    }
    assert linear_types and all("quantized" in t for t in linear_types)
    docs = list(nlp.pipe(texts))
    for doc, b in zip(docs, before):
        # int8 weights: the hidden states move, but not far.
        a = doc._.trf_data.tensors[0]
        assert a.shape == b.shape and not numpy.array_equal(a, b)
        assert abs(a - b).max() < 0.1 * abs(b).max()
    for doc in docs:
        for ent in doc.ents:
            assert ent.text == doc.text[ent.start_char : ent.end_char]
    with pytest.raises(ValueError, match="No spacy-transformers model"):
        quantize_encoder(nlp, names=["spandec_ner"])


def test_bfloat16_view_runs_only_per_span_layers_in_bf16(trained_nlp):
    net = net_of(trained_nlp)
    view = serving_view(net, "bfloat16")
    assert serving_view(net, "bfloat16") is view
    dtypes = {name: p.dtype for name, p in view.named_parameters()}
    for name in ("o_proj", "mlp", "classifier"):
        assert all(d == torch.bfloat16 for n, d in dtypes.items() if f"decoder.{name}." in n), name
    for name in ("q_proj", "k_proj", "v_proj", "relative_bias", "width_embed", "norm_query"):
        matching = [d for n, d in dtypes.items() if n.startswith(f"net.spandec.decoder.{name}")]
        assert matching and all(d == torch.float32 for d in matching), name
    # The float net itself is untouched.
    assert all(p.dtype == torch.float32 for p in net.parameters())
    ner = trained_nlp.get_pipe("spandec_ner")
    docs = upstream_docs(trained_nlp, [text for text, _ in TRAIN_DATA[:8]] + [""])
    float_logits = ner.model.ops.to_numpy(ner.predict(docs).logits)
    try:
        ner.inference_dtype = "bfloat16"
        output = ner.predict(docs)
        empty = ner.predict(docs[-1:])
    finally:
        ner.inference_dtype = "float32"
    bf16_logits = ner.model.ops.to_numpy(output.logits)
    assert bf16_logits.dtype == float_logits.dtype and bf16_logits.shape == float_logits.shape
    # The view really ran in bf16 (8 mantissa bits), and stayed close to float32.
    assert (bf16_logits != float_logits).any()
    assert abs(bf16_logits - float_logits).max() < 0.05 * abs(float_logits).max()
    assert empty.logits.shape[0] == 0


def test_views_predict_in_eval_mode_and_leave_training_to_the_net(trained_nlp):
    net = net_of(trained_nlp)
    view = serving_view(net, "float32")
    net.train()
    view.eval()  # what Thinc's shim does before predicting
    assert not any(m.training for m in net.modules())
    view.train()  # ... and after: a no-op on a view
    assert not any(m.training for m in net.modules())
    net.train()  # training switches the net itself back
    assert all(m.training for m in net.modules())
    ner = trained_nlp.get_pipe("spandec_ner")
    docs = upstream_docs(trained_nlp, [text for text, _ in TRAIN_DATA[:4]])
    first = ner.model.ops.to_numpy(ner.predict(docs).logits)
    net.train()
    second = ner.model.ops.to_numpy(ner.predict(docs).logits)  # dropout stays off
    assert (first == second).all()
    net.eval()
