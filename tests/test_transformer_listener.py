"""`spandec_ner` on a spacy-transformers `transformer` through its default
TransformerListener, with a tiny random BERT built on disk (no hub access)."""

import numpy
import pytest
import spacy
from thinc.api import Adam, fix_random_seed

from conftest import LABELS, TRAIN_DATA, make_bert_nlp, make_examples


def hf_config(nlp):
    return nlp.get_pipe("transformer").model.transformer.config


@pytest.fixture(scope="module")
def trained_bert(tiny_bert_dir):
    fix_random_seed(0)
    nlp = make_bert_nlp(tiny_bert_dir)
    examples = make_examples(nlp)
    nlp.initialize(lambda: examples)
    initial_weights = _bert_weight(nlp).copy()
    optimizer = Adam(0.003)
    losses = []
    for _ in range(80):
        step = {}
        nlp.update(examples, sgd=optimizer, losses=step)
        losses.append(step)
    return nlp, losses, initial_weights


def _bert_weight(nlp):
    bert = nlp.get_pipe("transformer").model.transformer
    return bert.encoder.layer[0].attention.self.query.weight.detach().cpu().numpy()


def test_tiny_bert_on_disk(tiny_bert_dir):
    from transformers import AutoConfig, AutoTokenizer

    config = AutoConfig.from_pretrained(str(tiny_bert_dir))
    assert (config.hidden_size, config.num_hidden_layers) == (32, 2)
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_bert_dir))
    assert tokenizer.is_fast
    pieces = tokenizer.tokenize("Angela Merkel met Zyxw")
    assert pieces[:3] == ["angela", "merkel", "met"]
    assert "[UNK]" not in pieces


def test_listener_is_the_default_tok2vec(bert_nlp):
    ner = bert_nlp.get_pipe("spandec_ner")
    assert any(node.name == "transformer-listener" for node in ner.model.walk())
    assert bert_nlp.get_pipe("transformer").listening_components == ["spandec_ner"]


def test_initialize_and_train(trained_bert):
    nlp, losses, initial_weights = trained_bert
    ner = nlp.get_pipe("spandec_ner")
    assert ner.labels == LABELS
    assert ner.model.get_dim("nI") == 32
    # The encoder is the on-disk BERT minus its last layer.
    assert hf_config(nlp).num_hidden_layers == 1
    assert len(nlp.get_pipe("transformer").model.transformer.encoder.layer) == 1
    ner_losses = [step["spandec_ner"] for step in losses]
    assert all(numpy.isfinite(ner_losses))
    assert ner_losses[-1] < ner_losses[0] / 4
    assert nlp.evaluate(make_examples(nlp))["ents_f"] > 0.3
    # The listener passes gradients back: the transformer's weights moved.
    assert not numpy.allclose(_bert_weight(nlp), initial_weights)


def test_prediction_aligned_to_tokens(trained_bert):
    nlp = trained_bert[0]
    for text in [t for t, _ in TRAIN_DATA] + ["Angela Merkel visited Qwzx-Plorb in Berlin ."]:
        doc = nlp(text)
        assert doc._.trf_data is not None
        group = doc.spans["spandec"]
        assert group.attrs["n_candidates"] == sum(min(len(doc) - i, 8) for i in range(len(doc)))
        assert len(group.attrs["scores"]) == len(group)
        for span in list(group) + list(doc.ents):
            assert 0 <= span.start < span.end <= len(doc)
            assert span.text == doc.text[span.start_char : span.end_char]
            assert span.label_ in LABELS


def test_encoder_depth_and_predictions_survive_to_disk(trained_bert, tmp_path):
    nlp = trained_bert[0]
    nlp.to_disk(tmp_path / "pipeline")
    nlp2 = spacy.load(tmp_path / "pipeline")
    assert hf_config(nlp2).num_hidden_layers == 1
    assert len(nlp2.get_pipe("transformer").model.transformer.encoder.layer) == 1
    assert nlp2.get_pipe("spandec_ner").labels == LABELS
    texts = [t for t, _ in TRAIN_DATA]
    for doc1, doc2 in zip(nlp.pipe(texts), nlp2.pipe(texts)):
        spans1 = [(s.start, s.end, s.label_) for s in doc1.spans["spandec"]]
        spans2 = [(s.start, s.end, s.label_) for s in doc2.spans["spandec"]]
        assert spans1 == spans2
        assert [(e.start, e.end, e.label_) for e in doc1.ents] == [
            (e.start, e.end, e.label_) for e in doc2.ents
        ]
        assert numpy.allclose(
            doc1.spans["spandec"].attrs["scores"], doc2.spans["spandec"].attrs["scores"], atol=1e-5
        )
        assert numpy.allclose(doc1._.trf_data.tensors[0], doc2._.trf_data.tensors[0], atol=1e-5)


def test_long_doc_beyond_the_strided_window(trained_bert):
    nlp = trained_bert[0]
    words = " ".join(t for t, _ in TRAIN_DATA).split() * 7
    text = " ".join(words[:600])
    doc = nlp(text)
    assert len(doc) == 600
    # strided_spans (window 128, stride 96) over 600 tokens: windows start at
    # 0, 96, ..., 480, and each one is encoded as its own row.
    starts = [0, 96, 192, 288, 384, 480]
    trf = doc._.trf_data
    assert trf.wordpieces.input_ids.shape[0] == len(starts)
    assert trf.tensors[0].shape[0] == len(starts)
    # Every training word is one wordpiece of the tiny vocab, so a token's
    # wordpiece count is the number of windows that cover it.
    covered = numpy.zeros(600, dtype=int)
    for start in starts:
        covered[start : start + 128] += 1
    assert trf.align.lengths.tolist() == covered.tolist()
    group = doc.spans["spandec"]
    assert group.attrs["n_candidates"] == sum(min(600 - i, 8) for i in range(600))
    assert all(0 <= s.start < s.end <= 600 for s in group)
    assert all(a.end <= b.start for a, b in zip(doc.ents, doc.ents[1:]))
    assert len(group.attrs["scores"]) == len(group)
