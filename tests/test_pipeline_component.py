"""The `spandec_ner` component on a small CNN tok2vec: training, outputs,
serialization, batching, errors, scoring and warnings."""

import pickle
import shutil
import subprocess
import sys
import warnings
from contextlib import contextmanager

import numpy
import pytest
import spacy
import torch
from spacy.tokens import Doc, Span
from spacy.training import Example
from thinc.api import ConfigValidationError, fix_random_seed

from spacy_spandec import SpanDecNER
from spacy_spandec.candidates import near_gold
from spacy_spandec.layers.decoder import RelativeSpanDecoder, sinusoidal_table
from spacy_spandec.layers.spandec_model import SampledDocs, decoder_net

from conftest import LABELS, TRAIN_DATA, char_spans, make_cnn_nlp, make_examples, train


def ents_of(doc):
    return [(e.start_char, e.end_char, e.label_) for e in doc.ents]


def spans_of(doc, key="spandec"):
    group = doc.spans[key]
    return [(s.start_char, s.end_char, s.label_) for s in group], list(group.attrs["scores"])


def gold_of(text, ents):
    return sorted(char_spans(text, ents))


@contextmanager
def setting(component, **values):
    """Temporarily change attributes of a (shared) component."""
    old = {name: getattr(component, name) for name in values}
    try:
        for name, value in values.items():
            setattr(component, name, value)
        yield component
    finally:
        for name, value in old.items():
            setattr(component, name, value)


# Registration -----------------------------------------------------------------


def test_add_pipe_by_name_through_entry_points():
    code = (
        "import sys, spacy\n"
        "print('before', 'spacy_spandec' in sys.modules)\n"
        "nlp = spacy.blank('en')\n"
        "nlp.add_pipe('spandec_ner')\n"
        "print(nlp.pipe_names)\n"
        "print(type(nlp.get_pipe('spandec_ner')).__name__)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd="/", timeout=120
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0] == "before False"
    assert lines[1] == "['spandec_ner']"
    assert lines[2] == "SpanDecNER"


def test_factory_defaults():
    nlp = spacy.blank("en")
    ner = nlp.add_pipe("spandec_ner")
    assert isinstance(ner, SpanDecNER)
    assert ner.max_span_length == 8
    assert ner.sf_threshold == 0.0
    assert ner.spans_key == "spandec"
    assert ner.labels == ()


# Labels -------------------------------------------------------------------------


def test_initialize_infers_labels():
    nlp = make_cnn_nlp()
    examples = make_examples(nlp)
    nlp.initialize(lambda: examples)
    ner = nlp.get_pipe("spandec_ner")
    assert ner.labels == LABELS
    assert ner.model.get_dim("nO") == len(LABELS) + 1


def test_initialize_with_given_labels():
    nlp = make_cnn_nlp()
    examples = make_examples(nlp)
    ner = nlp.get_pipe("spandec_ner")
    ner.initialize(lambda: examples, nlp=nlp, labels=["PER", "ORG", "LOC", "MISC"])
    assert ner.labels == ("PER", "ORG", "LOC", "MISC")
    assert ner.model.get_dim("nO") == 5
    # Training and predicting work with a label the data never uses.
    losses = {}
    nlp.update(examples, losses=losses, sgd=nlp.create_optimizer())
    assert losses["spandec_ner"] > 0
    doc = nlp(TRAIN_DATA[0][0])
    assert all(span.label_ in ner.labels for span in doc.spans["spandec"])


def test_initialize_labels_through_config():
    nlp = make_cnn_nlp()
    nlp.config["initialize"]["components"]["spandec_ner"] = {"labels": ["ORG", "GPE"]}
    examples = make_examples(nlp)
    nlp.initialize(lambda: examples)
    assert nlp.get_pipe("spandec_ner").labels == ("ORG", "GPE")


def test_add_label_before_and_after_initialize():
    nlp = make_cnn_nlp()
    ner = nlp.get_pipe("spandec_ner")
    assert ner.add_label("PER") == 1
    assert ner.add_label("PER") == 0
    examples = make_examples(nlp)
    nlp.initialize(lambda: examples)
    assert ner.add_label("ORG") == 0  # already known: no-op
    with pytest.raises(ValueError, match="re-initialize"):
        ner.add_label("MISC")
    assert "MISC" not in ner.labels


def test_reinitialize_with_new_labels():
    """The add_label error tells users to re-initialize: that must work, and
    give a component that predicts with the new label set."""
    nlp = make_cnn_nlp()
    examples = make_examples(nlp)
    nlp.initialize(lambda: examples)
    ner = nlp.get_pipe("spandec_ner")
    ner.initialize(lambda: examples, nlp=nlp, labels=["LOC", "ORG", "PER", "MISC"])
    assert ner.labels == ("LOC", "ORG", "PER", "MISC")
    assert ner.model.get_dim("nO") == 5
    nlp.update(examples, sgd=nlp.create_optimizer())
    doc = nlp(TRAIN_DATA[0][0])
    assert all(span.label_ in ner.labels for span in doc.spans["spandec"])


def test_initialize_without_any_label_fails():
    nlp = make_cnn_nlp()
    examples = make_examples(nlp, data=[("Nothing here .", [])])
    with pytest.raises(ValueError, match="no entity labels"):
        nlp.initialize(lambda: examples)


# Overfitting --------------------------------------------------------------------


def test_overfit_with_span_filter(trained_nlp, trained_losses):
    ner = trained_nlp.get_pipe("spandec_ner")
    examples = make_examples(trained_nlp)
    for threshold in (0.0, 0.3):
        with setting(ner, sf_threshold=threshold):
            scores = trained_nlp.evaluate(examples)
        assert scores["ents_f"] == 1.0, threshold
        assert scores["spans_spandec_f"] == 1.0, threshold
    losses = trained_losses["losses"]
    assert losses[-1] < losses[0] / 5
    for text, ents in TRAIN_DATA:
        assert ents_of(trained_nlp(text)) == gold_of(text, ents)


def test_overfit_without_span_filter():
    nlp = make_cnn_nlp(model={"span_filter": False})
    examples = make_examples(nlp)
    losses = train(nlp, examples, n_updates=80)
    assert losses[-1] < losses[0] / 5
    assert nlp.evaluate(examples)["ents_f"] == 1.0
    ner = nlp.get_pipe("spandec_ner")
    with pytest.raises(ValueError, match="span_filter"):
        SpanDecNER(nlp.vocab, ner.model, sf_threshold=0.3)


NESTED_DATA = [
    (
        "The New York Stock Exchange closed early .",
        [("New York Stock Exchange", "ORG"), ("New York", "LOC")],
    ),
    ("The Bank of England raised rates .", [("Bank of England", "ORG"), ("England", "LOC")]),
    (
        "Students of the University of Tokyo protested .",
        [("University of Tokyo", "ORG"), ("Tokyo", "LOC")],
    ),
    ("Angela Merkel visited Paris .", [("Angela Merkel", "PER"), ("Paris", "LOC")]),
    ("The Paris Agreement was signed .", [("Paris Agreement", "ORG"), ("Paris", "LOC")]),
]


def test_nested_gold_spans():
    nlp = make_cnn_nlp(gold_spans_key="gold")
    examples = []
    for text, ents in NESTED_DATA:
        reference = nlp.make_doc(text)
        reference.spans["gold"] = [
            reference.char_span(s, e, label=label) for s, e, label in char_spans(text, ents)
        ]
        examples.append(Example(nlp.make_doc(text), reference))
    losses = train(nlp, examples, n_updates=60)
    assert losses[-1] < losses[0] / 5
    for text, ents in NESTED_DATA:
        doc = nlp(text)
        predicted, _ = spans_of(doc)
        assert sorted(predicted) == gold_of(text, ents), text
        flat = [(e.start, e.end) for e in doc.ents]
        assert all(a[1] <= b[0] for a, b in zip(flat, flat[1:]))
        assert len(doc.ents) >= 1
    doc = nlp(NESTED_DATA[0][0])
    assert len(doc.spans["spandec"]) == 2 and len(doc.ents) == 1
    # The flat view keeps the higher-scored of the two overlapping spans.
    group = doc.spans["spandec"]
    best = group[int(numpy.argmax(group.attrs["scores"]))]
    assert (doc.ents[0].start, doc.ents[0].end, doc.ents[0].label_) == (
        best.start,
        best.end,
        best.label_,
    )
    scores = nlp.evaluate(examples)
    assert scores["spans_spandec_f"] == 1.0


def test_misaligned_gold_tokenization_trains():
    nlp = make_cnn_nlp()
    vocab = nlp.vocab
    # Reference tokens are coarser than spaCy's ("York-based", "Lopez-Garcia").
    items = [
        (
            ["The", "New", "York-based", "bank", "Chase", "hired", "Maria", "Lopez-Garcia", "."],
            [(4, 5, "ORG"), (6, 8, "PER")],
        ),
        (
            ["Chase", "and", "IBM-backed", "Acme", "met", "in", "Boston", "."],
            [(0, 1, "ORG"), (3, 4, "ORG"), (6, 7, "LOC")],
        ),
        (["Maria", "Lopez-Garcia", "flew", "to", "Boston", "."], [(0, 2, "PER"), (4, 5, "LOC")]),
    ]
    examples = []
    for words, ents in items:
        reference = Doc(vocab, words=words)
        reference.ents = [Span(reference, s, e, label=label) for s, e, label in ents]
        predicted = nlp.make_doc(reference.text)
        assert len(predicted) != len(reference)
        examples.append(Example(predicted, reference))
    examples += make_examples(nlp)
    losses = train(nlp, examples, n_updates=80)
    assert losses[-1] < losses[0] / 5
    for eg in examples[:3]:
        doc = nlp(eg.reference.text)
        assert ents_of(doc) == ents_of(eg.reference)
    assert nlp.evaluate(examples)["ents_f"] == 1.0


# Outputs ------------------------------------------------------------------------


def test_span_group_scores_and_offsets(trained_nlp):
    texts = [text for text, _ in TRAIN_DATA] + ["  Angela   Merkel\tmet\n Apple  in Tokyo.  "]
    for doc in trained_nlp.pipe(texts):
        group = doc.spans["spandec"]
        scores = group.attrs["scores"]
        assert len(scores) == len(group)
        assert all(isinstance(s, float) and 0.0 <= s <= 1.0 for s in scores)
        # Every span of <= 8 tokens that neither starts nor ends on whitespace.
        expected = sum(
            1
            for i in range(len(doc))
            for j in range(i + 1, min(i + 8, len(doc)) + 1)
            if not doc[i].is_space and not doc[j - 1].is_space
        )
        assert group.attrs["n_candidates"] == expected
        assert 0 <= group.attrs["n_kept"] <= group.attrs["n_candidates"]
        for span in list(group) + list(doc.ents):
            assert span.text == doc.text[span.start_char : span.end_char]
            assert span.label_ in LABELS
    doc = trained_nlp(texts[-1])
    assert any(token.is_space for token in doc)
    for span in doc.spans["spandec"]:
        assert not span[0].is_space and not span[-1].is_space
    assert len(trained_nlp(TRAIN_DATA[0][0]).spans["spandec"]) > 0


def test_ents_are_greedy_by_score(trained_nlp):
    ner = trained_nlp.get_pipe("spandec_ner")
    texts = [t for t, _ in TRAIN_DATA] + [
        "Angela Merkel Berlin Apple Tokyo Barack Obama Google Madrid"
    ]
    for doc in trained_nlp.pipe(texts):
        spans = list(doc.spans["spandec"])
        scores = doc.spans["spandec"].attrs["scores"]
        taken = numpy.zeros(len(doc), dtype=bool)
        expected = []
        for k in sorted(
            range(len(spans)), key=lambda k: (-scores[k], spans[k].start, spans[k].end)
        ):
            s = spans[k]
            if not taken[s.start : s.end].any():
                taken[s.start : s.end] = True
                expected.append((s.start, s.end, s.label_))
        assert [(e.start, e.end, e.label_) for e in doc.ents] == sorted(expected)
        assert all(a.end <= b.start for a, b in zip(doc.ents, doc.ents[1:]))
    assert ner.write_ents


def test_overlapping_spans_resolved_by_score():
    """A hand-made output: an overlapping lower-scored span loses."""
    nlp = make_cnn_nlp()
    ner = nlp.get_pipe("spandec_ner")
    doc = nlp.make_doc("The New York Stock Exchange opened")
    ner.cfg["labels"] = ["LOC", "ORG"]
    spans = [
        Span(doc, 1, 3, label="LOC"),
        Span(doc, 1, 5, label="ORG"),
        Span(doc, 5, 6, label="LOC"),
    ]
    ner._write_ents(doc, spans, [0.6, 0.9, 0.4])
    assert [(e.start, e.end, e.label_) for e in doc.ents] == [(1, 5, "ORG"), (5, 6, "LOC")]
    doc = nlp.make_doc("The New York Stock Exchange opened")
    spans = [Span(doc, 1, 3, label="LOC"), Span(doc, 1, 5, label="ORG")]
    ner._write_ents(doc, spans, [0.95, 0.9])
    assert [(e.start, e.end, e.label_) for e in doc.ents] == [(1, 3, "LOC")]


def test_write_ents_false_leaves_ents(trained_nlp):
    ner = trained_nlp.get_pipe("spandec_ner")
    text = TRAIN_DATA[0][0]
    with setting(ner, write_ents=False):
        doc = trained_nlp(text)
        assert len(doc.ents) == 0
        assert len(doc.spans["spandec"]) == 3
        doc = trained_nlp.make_doc(text)
        doc.ents = [Span(doc, 2, 3, label="MISC")]
        doc = ner(doc)
    assert [(e.text, e.label_) for e in doc.ents] == [("met", "MISC")]
    assert len(doc.spans["spandec"]) == 3


def test_overwrite_ents_false_keeps_existing(trained_nlp):
    ner = trained_nlp.get_pipe("spandec_ner")
    text = TRAIN_DATA[0][0]  # Angela Merkel met Emmanuel Macron in Berlin .
    with setting(ner, overwrite_ents=False):
        doc = trained_nlp.make_doc(text)
        doc.ents = [Span(doc, 1, 3, label="MISC")]  # "Merkel met": overlaps a prediction
        doc = ner(doc)
    assert [(e.text, e.label_) for e in doc.ents] == [
        ("Merkel met", "MISC"),
        ("Emmanuel Macron", "PER"),
        ("Berlin", "LOC"),
    ]
    # With overwriting (the default) the predictions replace it.
    doc = trained_nlp.make_doc(text)
    doc.ents = [Span(doc, 1, 3, label="MISC")]
    doc = ner(doc)
    assert [(e.text, e.label_) for e in doc.ents] == [
        ("Angela Merkel", "PER"),
        ("Emmanuel Macron", "PER"),
        ("Berlin", "LOC"),
    ]


def test_threshold_one_prunes_everything_gracefully(trained_nlp):
    ner = trained_nlp.get_pipe("spandec_ner")
    examples = make_examples(trained_nlp)
    with setting(ner, sf_threshold=1.0):
        doc = trained_nlp(TRAIN_DATA[0][0])
        scores = trained_nlp.evaluate(examples)
    assert len(doc.spans["spandec"]) == 0 and len(doc.ents) == 0
    assert doc.spans["spandec"].attrs["n_kept"] == 0
    assert doc.spans["spandec"].attrs["n_candidates"] == 36
    assert scores["spans_spandec_kept_fraction"] == 0.0
    assert scores["ents_f"] == 0.0


def test_custom_spans_key():
    nlp = make_cnn_nlp(spans_key="ner_all")
    examples = make_examples(nlp)
    train(nlp, examples, n_updates=2)
    doc = nlp(TRAIN_DATA[0][0])
    assert "ner_all" in doc.spans and "spandec" not in doc.spans
    assert "spans_ner_all_f" in nlp.evaluate(examples)


# Serialization ------------------------------------------------------------------

PROBE_TEXTS = [text for text, _ in TRAIN_DATA] + [
    "Angela Merkel and Barack Obama met Apple in Tokyo .",
    "Microsoft hired John Smith in Paris .",
]


def predictions(nlp, texts=PROBE_TEXTS):
    ents, spans, scores = [], [], []
    for doc in nlp.pipe(texts):
        ents.append(ents_of(doc))
        group_spans, group_scores = spans_of(doc)
        spans.append(group_spans)
        scores.append(group_scores)
    return ents, spans, scores


def assert_same_predictions(a, b):
    ents_a, spans_a, scores_a = a
    ents_b, spans_b, scores_b = b
    assert ents_a == ents_b
    assert spans_a == spans_b
    for x, y in zip(scores_a, scores_b):
        assert numpy.allclose(x, y, atol=1e-6)


def test_to_disk_and_spacy_load(trained_nlp, trained_dir):
    nlp2 = spacy.load(trained_dir)
    ner2 = nlp2.get_pipe("spandec_ner")
    assert ner2.labels == LABELS
    assert ner2.max_span_length == 8
    assert ner2.sf_threshold == 0.0
    assert_same_predictions(predictions(trained_nlp), predictions(nlp2))
    assert any(predictions(nlp2)[0])


def test_resume_training_after_load(trained_dir):
    nlp = spacy.load(trained_dir)
    examples = make_examples(nlp)
    assert nlp.evaluate(examples)["ents_f"] == 1.0
    optimizer = nlp.resume_training()
    # A fresh optimizer (no Adam moments) may wobble for a step; training
    # must go on from the loaded weights, not from scratch.
    for _ in range(3):
        losses = nlp.update(examples, sgd=optimizer)
        assert numpy.isfinite(losses["spandec_ner"])
    assert nlp.evaluate(examples)["ents_f"] >= 0.8


def test_to_bytes_and_from_bytes(trained_nlp):
    data = trained_nlp.to_bytes()
    nlp2 = spacy.util.load_model_from_config(trained_nlp.config, auto_fill=True)
    assert nlp2.get_pipe("spandec_ner").labels == ()
    nlp2.from_bytes(data)
    assert nlp2.get_pipe("spandec_ner").labels == LABELS
    assert_same_predictions(predictions(trained_nlp), predictions(nlp2))
    # Component-level round trip into a fresh component too.
    ner = trained_nlp.get_pipe("spandec_ner")
    nlp3 = spacy.util.load_model_from_config(trained_nlp.config, auto_fill=True)
    nlp3.get_pipe("spandec_ner").from_bytes(ner.to_bytes())
    assert_same_predictions(predictions(trained_nlp), predictions(nlp3))


def test_pickle(trained_nlp):
    nlp2 = pickle.loads(pickle.dumps(trained_nlp))
    assert nlp2.get_pipe("spandec_ner").labels == LABELS
    assert_same_predictions(predictions(trained_nlp), predictions(nlp2))
    ner2 = pickle.loads(pickle.dumps(trained_nlp.get_pipe("spandec_ner")))
    docs = [ner2(trained_nlp.make_doc(t)) for t in PROBE_TEXTS]
    assert [ents_of(d) for d in docs] == predictions(trained_nlp)[0]


def test_sf_threshold_override_at_load(trained_nlp, trained_dir):
    nlp2 = spacy.load(trained_dir, config={"components": {"spandec_ner": {"sf_threshold": 0.4}}})
    ner2 = nlp2.get_pipe("spandec_ner")
    assert nlp2.config["components"]["spandec_ner"]["sf_threshold"] == 0.4
    assert ner2.sf_threshold == 0.4
    doc = nlp2(TRAIN_DATA[0][0])
    assert doc.spans["spandec"].attrs["n_kept"] < doc.spans["spandec"].attrs["n_candidates"]


def test_sf_threshold_from_saved_config(trained_dir, tmp_path):
    path = tmp_path / "pipeline"
    shutil.copytree(trained_dir, path)
    config_file = path / "config.cfg"
    text = config_file.read_text(encoding="utf8")
    assert "sf_threshold = 0.0" in text
    config_file.write_text(
        text.replace("sf_threshold = 0.0", "sf_threshold = 0.35"), encoding="utf8"
    )
    nlp2 = spacy.load(path)
    assert nlp2.get_pipe("spandec_ner").sf_threshold == 0.35


def test_sf_threshold_set_before_saving(tmp_path):
    """A pipeline created with a threshold keeps it through to_disk / load."""
    nlp = make_cnn_nlp(sf_threshold=0.3)
    train(nlp, make_examples(nlp), n_updates=2)
    nlp.to_disk(tmp_path / "p")
    nlp2 = spacy.load(tmp_path / "p")
    assert nlp2.get_pipe("spandec_ner").sf_threshold == 0.3


# Batching -----------------------------------------------------------------------

PIPE_TEXTS = [
    "Angela Merkel met Emmanuel Macron in Berlin .",
    "",
    "   ",
    "Apple 🍎 opened an office in London 🇬🇧 .",
    "東京で会議があった。 Tokyo hosted it .",
    "Barack Obama spoke at Harvard University yesterday .",
    "a",
    "Maria Garcia works for Google in Madrid .\n\nJohn Smith flew from Paris to Rome .",
    "\n",
    "The United Nations met in Geneva .",
    "😀😀😀",
    "Elon Musk founded SpaceX in California .",
    "Nobody saw anything unusual today .",
    " ".join(["Tokyo is the capital of Japan ."] * 12),
    "Siemens hired Peter Weber in Munich .",
    "The New York Stock Exchange closed early on Friday .",
    "Microsoft and Amazon compete in Seattle .",
    "Ünïcödé Çafé in Zürich .",
    "x" * 50,
    "Paris",
]


@pytest.mark.parametrize("batch_size", [1, 7, 64])
def test_pipe_equals_call(trained_nlp, batch_size):
    singles = [trained_nlp(t) for t in PIPE_TEXTS]
    ents, spans, scores = [], [], []
    for doc in trained_nlp.pipe(PIPE_TEXTS, batch_size=batch_size):
        ents.append(ents_of(doc))
        group_spans, group_scores = spans_of(doc)
        spans.append(group_spans)
        scores.append(group_scores)
    single_spans = [spans_of(d) for d in singles]
    assert ents == [ents_of(d) for d in singles]
    assert spans == [s for s, _ in single_spans]
    for got, (_, want) in zip(scores, single_spans):
        assert numpy.allclose(got, want, atol=1e-5)
    assert ents[1] == [] and spans[1] == []  # the empty text
    assert sum(map(len, ents)) > 10


def test_no_entity_starts_or_ends_with_whitespace(trained_nlp):
    """spaCy's `ner` never lets an entity start or end on a whitespace token
    (newlines, runs of spaces); `spandec_ner` writes doc.ents too, so it must
    not either - whatever the model scores."""
    texts = [
        "   ",
        "\n",
        "Angela Merkel met\n\nEmmanuel Macron in Berlin .",
        "Tokyo is nice .\n\nParis too .",
        "Apple  opened  an office in  London .",
    ]
    bad = []
    for doc in trained_nlp.pipe(texts):
        assert any(token.is_space for token in doc)
        for span in list(doc.ents) + list(doc.spans["spandec"]):
            if span[0].is_space or span[-1].is_space:
                bad.append((span.text, span.label_))
    assert bad == []


def test_pipe_multiprocess(trained_nlp):
    expected = [ents_of(trained_nlp(t)) for t in PIPE_TEXTS]
    docs = list(trained_nlp.pipe(PIPE_TEXTS, n_process=2, batch_size=4))
    assert [ents_of(d) for d in docs] == expected
    assert all("spandec" in d.spans for d in docs)


def test_update_on_empty_docs_is_a_noop(trained_nlp):
    nlp = make_cnn_nlp()
    examples = make_examples(nlp)
    nlp.initialize(lambda: examples)
    empty = [Example(nlp.make_doc(""), nlp.make_doc(""))]
    losses = nlp.update(empty, sgd=nlp.create_optimizer())
    assert losses["spandec_ner"] == 0.0
    # A batch mixing empty and non-empty docs trains.
    losses = nlp.update(empty + examples[:2], sgd=nlp.create_optimizer())
    assert losses["spandec_ner"] > 0.0


# Errors -------------------------------------------------------------------------


def test_predict_before_initialize():
    nlp = make_cnn_nlp()
    with pytest.raises(ValueError, match="not initialized"):
        nlp("Angela Merkel met Emmanuel Macron in Berlin .")


def test_bad_max_span_length():
    with pytest.raises(ValueError, match="max_span_length"):
        make_cnn_nlp(model={"max_span_length": 0})


V1 = {"@architectures": "spacy-spandec.SpanDecoder.v1"}


def test_bad_position_settings():
    with pytest.raises(ValueError, match="position_init"):
        make_cnn_nlp(model={**V1, "position_init": "learned"})
    with pytest.raises(ValueError, match="position_key_scale"):
        make_cnn_nlp(model={**V1, "position_key_scale": 0.0})
    # v2 has relative positions and none of v1's position settings.
    with pytest.raises(ConfigValidationError, match="position_key_scale"):
        make_cnn_nlp(model={"position_key_scale": 16.0})


def test_default_decoder_has_relative_positions():
    nlp = make_cnn_nlp()
    nlp.initialize(lambda: make_examples(nlp))
    ner = nlp.get_pipe("spandec_ner")
    assert (
        nlp.config["components"]["spandec_ner"]["model"]["@architectures"]
        == "spacy-spandec.SpanDecoder.v2"
    )
    decoder = decoder_net(ner.model).spandec["decoder"]
    assert isinstance(decoder, RelativeSpanDecoder)
    assert decoder_net(ner.model).config["positions"] == "relative"


@pytest.mark.parametrize("position_init,scale", [("random", 4.0), ("sinusoidal", 16.0)])
def test_v1_pipelines_still_build_save_and_load(position_init, scale, tmp_path):
    """Pipelines trained with the v1 decoder (window-absolute positions) keep
    loading and predicting as they did."""
    nlp = make_cnn_nlp(model={**V1, "position_init": position_init, "position_key_scale": scale})
    nlp.initialize(lambda: make_examples(nlp))
    decoder = decoder_net(nlp.get_pipe("spandec_ner").model).spandec["decoder"]
    torch.testing.assert_close(decoder.pos_key_proj.weight, decoder.q_proj.weight * scale)
    table = decoder.positions.weight
    is_sinusoidal = torch.allclose(table, sinusoidal_table(*table.shape))
    assert is_sinusoidal == (position_init == "sinusoidal")
    texts = ["Angela Merkel met Emmanuel Macron in Berlin ."]
    nlp.to_disk(tmp_path / "p")
    loaded = spacy.load(tmp_path / "p")
    expected = [[(e.start, e.end, e.label_) for e in doc.ents] for doc in nlp.pipe(texts)]
    assert [
        [(e.start, e.end, e.label_) for e in doc.ents] for doc in loaded.pipe(texts)
    ] == expected
    assert loaded.get_pipe("spandec_ner").model.attrs["position_init"] == position_init


def test_bad_sf_threshold():
    with pytest.raises(ValueError, match="sf_threshold"):
        make_cnn_nlp(sf_threshold=1.5)
    nlp = make_cnn_nlp()
    with pytest.raises(ValueError, match="sf_threshold"):
        nlp.get_pipe("spandec_ner").sf_threshold = -0.1


def test_bad_outside_bias():
    for value in (float("nan"), float("inf"), "low", True):
        with pytest.raises(ValueError, match="outside_bias"):
            make_cnn_nlp().get_pipe("spandec_ner").outside_bias = value


def test_bad_negative_weight():
    for value in (0.0, -1.0):
        with pytest.raises(ValueError, match="negative_weight must be > 0"):
            make_cnn_nlp(negative_weight=value)


@pytest.mark.parametrize("negative_weight", [1.0, 0.25])
def test_span_loss_is_the_o_weighted_cross_entropy(negative_weight):
    """get_loss against torch's weighted cross-entropy (mean over the weights)
    and its autograd gradient."""
    nlp = make_cnn_nlp(negative_weight=negative_weight, sf_loss_weight=0.0)
    examples = make_examples(nlp)
    nlp.initialize(lambda: examples)
    ner = nlp.get_pipe("spandec_ner")
    output = ner.model.predict([eg.predicted for eg in examples[:4]])
    loss, (d_logits, d_tokens) = ner.get_loss(examples[:4], output)
    targets, _ = ner._targets(examples[:4], output)
    assert 0 < (targets > 0).sum() < len(targets)
    logits = torch.tensor(numpy.asarray(output.logits), requires_grad=True)
    class_weights = torch.ones(logits.shape[1])
    class_weights[0] = negative_weight
    expected = torch.nn.functional.cross_entropy(
        logits, torch.tensor(targets), weight=class_weights
    )
    expected.backward()
    assert loss == pytest.approx(float(expected.detach()), rel=1e-5)
    assert numpy.allclose(numpy.asarray(d_logits), logits.grad.numpy(), atol=1e-7)
    assert d_tokens is None


def test_negative_sampling_decodes_every_gold_span_and_a_share_of_the_o_spans():
    """In training, negative_sampling decodes every gold span and each O span
    with probability negative_weight, and the sampled O spans count in full:
    the loss is the plain cross-entropy over the decoded spans."""
    nlp = make_cnn_nlp(
        negative_sampling=True, keep_near_negatives=False, negative_weight=0.3, sf_loss_weight=0.0
    )
    examples = make_examples(nlp)
    nlp.initialize(lambda: examples)
    ner = nlp.get_pipe("spandec_ner")
    docs = [eg.predicted for eg in examples]
    full = ner.model.predict(docs)
    fix_random_seed(0)
    output, _ = ner.model.begin_update(
        SampledDocs(docs, ner._sample_negatives(*ner._gold_table(examples)))
    )
    assert output.sampled and not full.sampled
    assert list(output.n_candidates) == list(full.n_candidates)
    all_targets, _ = ner._targets(examples, full)
    targets, _ = ner._targets(examples, output)
    assert (targets > 0).sum() == (all_targets > 0).sum() > 0
    o_kept = (targets == 0).sum() / (all_targets == 0).sum()
    assert 0.2 < o_kept < 0.4, o_kept
    loss, (d_logits, _) = ner.get_loss(examples, output)
    logits = torch.tensor(numpy.asarray(output.logits), requires_grad=True)
    expected = torch.nn.functional.cross_entropy(logits, torch.tensor(targets))
    expected.backward()
    assert loss == pytest.approx(float(expected.detach()), rel=1e-5)
    assert numpy.allclose(numpy.asarray(d_logits), logits.grad.numpy(), atol=1e-7)
    # Prediction is never sampled.
    assert ner.model.predict(
        SampledDocs(docs, lambda c, o: numpy.zeros(len(c), bool))
    ).n_kept.sum() == (full.n_kept.sum())


def test_negative_sampling_learns():
    nlp = make_cnn_nlp(negative_sampling=True, keep_near_negatives=False)
    examples = make_examples(nlp)
    losses = train(nlp, examples, n_updates=80)
    assert losses[-1] < losses[0] / 5
    assert nlp.evaluate(examples)["ents_f"] == 1.0


def test_keep_near_negatives_decodes_every_o_span_near_a_gold_span():
    """keep_near_negatives decodes every gold span and every O span that
    overlaps or touches one (weight negative_weight), and samples the far O
    spans (weight 1); with a rate of 1 it is the full loss exactly."""
    nlp = make_cnn_nlp(
        negative_sampling=True, keep_near_negatives=True, negative_weight=0.3, sf_loss_weight=0.0
    )
    examples = make_examples(nlp)
    nlp.initialize(lambda: examples)
    ner = nlp.get_pipe("spandec_ner")
    docs = [eg.predicted for eg in examples]
    full = ner.model.predict(docs)
    gold = {(i, ent.start, ent.end) for i, eg in enumerate(examples) for ent in eg.reference.ents}

    def near(i, start, end):
        return any(j == i and start <= e and end >= s for j, s, e in gold)

    all_near = {
        (int(i), int(s), int(e))
        for i, s, e in zip(full.doc_ids, full.starts, full.ends)
        if near(i, s, e)
    }
    assert 0 < len(gold) < len(all_near) < len(full.starts)
    fix_random_seed(0)
    output, _ = ner.model.begin_update(
        SampledDocs(docs, ner._sample_negatives(*ner._gold_table(examples)))
    )
    decoded = {
        (int(i), int(s), int(e)) for i, s, e in zip(output.doc_ids, output.starts, output.ends)
    }
    assert all_near <= decoded
    far_o = len(full.starts) - len(all_near)
    far_kept = (len(decoded) - len(all_near)) / far_o
    assert 0.15 < far_kept < 0.45, far_kept
    targets, _ = ner._targets(examples, output)
    is_near = numpy.array(
        [near(i, s, e) for i, s, e in zip(output.doc_ids, output.starts, output.ends)]
    )
    weights = numpy.where(targets == 0, numpy.where(is_near, 0.3, 1.0), 1.0)
    loss, (d_logits, _) = ner.get_loss(examples, output)
    log_probs = torch.log_softmax(torch.tensor(numpy.asarray(output.logits)), dim=1).numpy()
    expected = -(weights * log_probs[numpy.arange(len(targets)), targets]).sum() / weights.sum()
    assert loss == pytest.approx(float(expected), rel=1e-5)
    # At rate 1 every span is decoded with the full recipe's weights.
    every = make_cnn_nlp(negative_sampling=True, keep_near_negatives=True, negative_weight=1.0)
    every.initialize(lambda: examples)
    ner = every.get_pipe("spandec_ner")
    fix_random_seed(0)
    sampled, _ = ner.model.begin_update(
        SampledDocs(docs, ner._sample_negatives(*ner._gold_table(examples)))
    )
    fix_random_seed(0)
    plain, _ = ner.model.begin_update(docs)
    assert len(sampled.starts) == len(plain.starts)
    assert ner.get_loss(examples, sampled)[0] == pytest.approx(
        ner.get_loss(examples, plain)[0], rel=1e-5
    )


def test_near_negative_rate_samples_the_near_o_spans_and_weighs_them_up():
    """Below 1, near_negative_rate decodes that share of the near O spans,
    weighted negative_weight / rate, and the far ones at negative_weight
    (weight 1); every gold span is still decoded."""
    nlp = make_cnn_nlp(
        negative_sampling=True,
        keep_near_negatives=True,
        near_negative_rate=0.5,
        negative_weight=0.3,
        sf_loss_weight=0.0,
    )
    examples = make_examples(nlp) * 8
    nlp.initialize(lambda: examples)
    ner = nlp.get_pipe("spandec_ner")
    docs = [eg.predicted for eg in examples]
    full = ner.model.predict(docs)
    dense, tokens = ner._gold_table(examples)
    all_near = near_gold(tokens, full.lengths, full.doc_ids, full.starts, full.ends)
    all_targets, _ = ner._targets(examples, full)
    fix_random_seed(0)
    output, _ = ner.model.begin_update(SampledDocs(docs, ner._sample_negatives(dense, tokens)))
    targets, _ = ner._targets(examples, output)
    near = near_gold(tokens, output.lengths, output.doc_ids, output.starts, output.ends)
    assert (targets > 0).sum() == (all_targets > 0).sum() > 0
    near_kept = ((targets == 0) & near).sum() / ((all_targets == 0) & all_near).sum()
    far_kept = ((targets == 0) & ~near).sum() / ((all_targets == 0) & ~all_near).sum()
    assert 0.4 < near_kept < 0.6, near_kept
    assert 0.2 < far_kept < 0.4, far_kept
    weights = numpy.where(targets == 0, numpy.where(near, 0.3 / 0.5, 1.0), 1.0)
    loss, _ = ner.get_loss(examples, output)
    log_probs = torch.log_softmax(torch.tensor(numpy.asarray(output.logits)), dim=1).numpy()
    expected = -(weights * log_probs[numpy.arange(len(targets)), targets]).sum() / weights.sum()
    assert loss == pytest.approx(float(expected), rel=1e-5)


@pytest.mark.parametrize("rate", [0.0, -0.5, 1.5])
def test_near_negative_rate_must_be_a_probability(rate):
    with pytest.raises(ValueError, match="near_negative_rate"):
        make_cnn_nlp(near_negative_rate=rate)


def test_keep_near_negatives_learns():
    nlp = make_cnn_nlp(negative_sampling=True, keep_near_negatives=True)
    examples = make_examples(nlp)
    losses = train(nlp, examples, n_updates=80)
    assert losses[-1] < losses[0] / 5
    assert nlp.evaluate(examples)["ents_f"] == 1.0


def test_default_samples_far_negatives_and_one_setting_restores_the_full_loss():
    """The shipped recipe samples the far O spans; negative_sampling = false
    alone (keep_near_negatives stays at its default) decodes every candidate
    with the O weight, the paper's loss up to that weight."""
    default = make_cnn_nlp().get_pipe("spandec_ner")
    assert default.negative_sampling and default.keep_near_negatives
    nlp = make_cnn_nlp(model={"dropout": 0.0}, negative_sampling=False, sf_loss_weight=0.0)
    examples = make_examples(nlp)
    nlp.initialize(lambda: examples)
    ner = nlp.get_pipe("spandec_ner")
    full = ner.model.predict([eg.predicted for eg in examples])
    expected = ner.get_loss(examples, full)[0]
    losses = nlp.update(examples, drop=0.0)
    assert losses["spandec_ner"] == pytest.approx(expected, rel=1e-5)


def test_negative_sampling_needs_a_rate():
    with pytest.raises(ValueError, match="negative_sampling"):
        make_cnn_nlp(negative_sampling=True, negative_weight=2.0)


def span_precision_recall(docs, data):
    """Precision and recall of all predicted spans (doc.spans) against the gold."""
    got = {
        (i, s.start_char, s.end_char, s.label_)
        for i, doc in enumerate(docs)
        for s in doc.spans["spandec"]
    }
    gold = {(i, *span) for i, (text, ents) in enumerate(data) for span in char_spans(text, ents)}
    right = len(got & gold)
    return right / max(len(got), 1), right / len(gold)


def test_outside_bias_trades_precision_for_recall(trained_dir):
    """On a briefly trained model (it misses entities at the plain argmax), a
    negative offset of the O logit finds more gold spans and keeps fewer wrong
    ones out; a positive one does the reverse."""
    # The paper's plain mean over spans (negative_weight 1): briefly trained,
    # it misses entities (the default, 0.3, already has full recall here).
    nlp = make_cnn_nlp(negative_weight=1.0)
    train(nlp, make_examples(nlp), n_updates=15)  # measured: P 0.94, R 0.63 at bias 0
    ner = nlp.get_pipe("spandec_ner")
    texts = [text for text, _ in TRAIN_DATA]
    measured = {}
    for bias in (1.0, 0.0, -1.0, -30.0):
        with setting(ner, outside_bias=bias):
            measured[bias] = span_precision_recall(list(nlp.pipe(texts)), TRAIN_DATA)
    (p_high, r_high), (p0, r0), (p_low, r_low), (p_lowest, r_lowest) = measured.values()
    assert 0 < r0 < 1, measured  # not vacuous: there is recall to gain
    assert r_high <= r0 < r_low <= r_lowest, measured
    assert p_high >= p0 > p_low >= p_lowest, measured
    with setting(ner, outside_bias=30.0):
        assert all(len(doc.spans["spandec"]) == 0 and len(doc.ents) == 0 for doc in nlp.pipe(texts))
    # A config override at load is the value used.
    loaded = spacy.load(trained_dir, config={"components": {"spandec_ner": {"outside_bias": 30.0}}})
    assert loaded.get_pipe("spandec_ner").outside_bias == 30.0
    assert len(loaded(texts[0]).ents) == 0


def test_label_biases_move_one_label_only(trained_nlp, trained_dir):
    """A per-label offset acts on its label's logit: a large negative one
    removes that label from the output and keeps the spans of the others."""
    ner = trained_nlp.get_pipe("spandec_ner")
    texts = [text for text, _ in TRAIN_DATA]
    before = [
        [(s.start, s.end, s.label_) for s in doc.spans["spandec"]]
        for doc in trained_nlp.pipe(texts)
    ]
    label = before[0][0][2]
    assert any(lab != label for doc in before for _, _, lab in doc), (
        before
    )  # not vacuous: other labels exist
    with setting(ner, label_biases={label: -30.0}):
        after = [
            [(s.start, s.end, s.label_) for s in doc.spans["spandec"]]
            for doc in trained_nlp.pipe(texts)
        ]
    # The label is gone; every span of another label stays (a span that lost
    # the label may take its next-best label if that beats O).
    assert all(lab != label for doc in after for _, _, lab in doc), after
    assert all({span for span in b if span[2] != label} <= set(a) for b, a in zip(before, after)), (
        before,
        after,
    )
    with setting(ner, label_biases={"NOT_A_LABEL": 1.0}):
        with pytest.raises(ValueError, match="NOT_A_LABEL"):
            trained_nlp(texts[0])
    with pytest.raises(ValueError, match="finite"):
        ner.label_biases = {label: float("nan")}
    # In the config, as `calibrate` writes it, and at load.
    loaded = spacy.load(
        trained_dir, config={"components": {"spandec_ner": {"label_biases": {label: -30.0}}}}
    )
    assert all(s.label_ != label for doc in loaded.pipe(texts) for s in doc.spans["spandec"])


def test_wrong_config_type():
    with pytest.raises(ConfigValidationError) as excinfo:
        make_cnn_nlp(model={"max_span_length": "abc"})
    assert "max_span_length" in str(excinfo.value)


def test_heads_must_divide_width():
    nlp = make_cnn_nlp(model={"n_heads": 5})
    examples = make_examples(nlp)
    with pytest.raises(ValueError, match="n_heads"):
        nlp.initialize(lambda: examples)


def test_listener_without_upstream_transformer():
    nlp = spacy.blank("en")
    nlp.add_pipe("spandec_ner")
    examples = make_examples(nlp)
    with pytest.raises(ValueError, match="transformer"):
        nlp.initialize(lambda: examples)


def test_truncated_model_file(trained_dir, tmp_path):
    path = tmp_path / "pipeline"
    shutil.copytree(trained_dir, path)
    model_file = path / "spandec_ner" / "model"
    data = model_file.read_bytes()
    model_file.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="(?i)corrupt|truncated"):
        spacy.load(path)


@pytest.mark.parametrize("damage", ["deleted", "a_directory"])
def test_missing_or_unreadable_model_file(trained_dir, tmp_path, damage):
    """A pipeline copied without its weights names the file and the fix."""
    from spacy_spandec.layers.spandec_model import SpanDecoderLoadError

    path = tmp_path / "pipeline"
    shutil.copytree(trained_dir, path)
    model_file = path / "spandec_ner" / "model"
    model_file.unlink()
    if damage == "a_directory":
        model_file.mkdir()
    with pytest.raises(SpanDecoderLoadError) as excinfo:
        spacy.load(path)
    message = str(excinfo.value)
    assert str(model_file) in message
    assert "'spandec_ner'" in message and "nlp.to_disk()" in message


def corrupt_decoder_weights(model_bytes: bytes) -> bytes:
    """Truncate the safetensors weights nested inside a `spandec_ner` model blob."""
    import srsly

    msg = srsly.msgpack_loads(model_bytes)
    n_changed = 0
    for node_shims in msg["shims"]:
        for j, shim_bytes in enumerate(node_shims):
            shim = srsly.msgpack_loads(shim_bytes)
            state = srsly.msgpack_loads(shim["state"])
            if isinstance(state, dict) and state.get("weights"):
                state["weights"] = state["weights"][: len(state["weights"]) // 2]
                shim["state"] = srsly.msgpack_dumps(state)
                node_shims[j] = srsly.msgpack_dumps(shim)
                n_changed += 1
    assert n_changed == 1
    return srsly.msgpack_dumps(msg)


def test_corrupt_decoder_weights(trained_nlp, trained_dir, tmp_path):
    """Decoder weights that cannot be read are refused with a clear message."""
    from spacy_spandec.layers.spandec_model import SpanDecoderLoadError

    data = corrupt_decoder_weights(trained_nlp.get_pipe("spandec_ner").model.to_bytes())
    nlp2 = spacy.util.load_model_from_config(trained_nlp.config, auto_fill=True)
    with pytest.raises(SpanDecoderLoadError, match="(?i)corrupt|truncated"):
        nlp2.get_pipe("spandec_ner").model.from_bytes(data)
    path = tmp_path / "pipeline"
    shutil.copytree(trained_dir, path)
    (path / "spandec_ner" / "model").write_bytes(data)
    with pytest.raises(ValueError, match="(?i)corrupt|truncated"):
        spacy.load(path)


def test_evaluate_with_unknown_label(trained_nlp):
    examples = make_examples(
        trained_nlp,
        data=[("Angela Merkel likes Python .", [("Angela Merkel", "PER"), ("Python", "LANGUAGE")])],
    )
    with pytest.raises(ValueError, match="LANGUAGE"):
        trained_nlp.evaluate(examples)


def test_update_with_unknown_label():
    nlp = make_cnn_nlp()
    nlp.initialize(lambda: make_examples(nlp))
    examples = make_examples(nlp, data=[("Angela Merkel likes Python .", [("Python", "LANGUAGE")])])
    with pytest.raises(ValueError, match="LANGUAGE"):
        nlp.update(examples)


# Scoring ------------------------------------------------------------------------


def test_evaluate_scores(trained_nlp):
    ner = trained_nlp.get_pipe("spandec_ner")
    examples = make_examples(trained_nlp)
    scores = trained_nlp.evaluate(examples)
    for key in ("ents_f", "ents_p", "ents_r", "ents_per_type", "seqeval_f", "spans_spandec_f"):
        assert key in scores, key
    assert set(scores["ents_per_type"]) == set(LABELS)
    assert scores["seqeval_f"] == 1.0
    assert scores["spans_spandec_kept_fraction"] == 1.0
    with setting(ner, sf_threshold=0.5):
        pruned = trained_nlp.evaluate(examples)
    assert 0.0 < pruned["spans_spandec_kept_fraction"] < 1.0
    assert pruned["ents_f"] == 1.0


def test_score_counts_errors(trained_nlp):
    """A wrong gold label and a missing gold span lower the scores."""
    data = [
        (
            "Angela Merkel met Emmanuel Macron in Berlin .",
            [("Angela Merkel", "ORG"), ("Berlin", "LOC")],
        ),
    ]
    scores = trained_nlp.evaluate(make_examples(trained_nlp, data=data))
    # Predicted: 3 entities; gold: 2, one of them matching.
    assert scores["ents_p"] == pytest.approx(1 / 3)
    assert scores["ents_r"] == pytest.approx(1 / 2)
    assert scores["seqeval_f"] == pytest.approx(0.4)
    assert scores["spans_spandec_f"] == pytest.approx(0.4)


# Warnings -----------------------------------------------------------------------


def test_warns_about_spans_longer_than_max_span_length():
    nlp = make_cnn_nlp(model={"max_span_length": 2})
    examples = make_examples(nlp)  # one 4-token entity: New York Stock Exchange
    examples += make_examples(
        nlp,
        data=[
            ("Bank of New England Corporation rose .", [("Bank of New England Corporation", "ORG")])
        ],
    )
    n_gold = sum(len(eg.reference.ents) for eg in examples)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        nlp.initialize(lambda: examples)
    ours = [w for w in caught if "max_span_length" in str(w.message)]
    assert len(ours) == 1
    assert issubclass(ours[0].category, UserWarning)
    assert f"2 of {n_gold} gold spans" in str(ours[0].message)


def test_no_warning_when_spans_fit():
    nlp = make_cnn_nlp()
    examples = make_examples(nlp)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        nlp.initialize(lambda: examples)
    assert not [w for w in caught if "max_span_length" in str(w.message)]
