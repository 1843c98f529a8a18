"""Shared fixtures: a tiny labelled corpus, CNN and tiny-BERT pipelines.

Everything here is sized for a loaded 2-core machine: a 64-wide CNN tok2vec,
a 32-wide random BERT built on disk (no hub access), and one trained CNN
pipeline shared by the whole session. Both pipelines keep the shipped decoder
dropout (0.1), so a model that predicted in train mode would not give
repeatable output.

The builders and helpers here are plain functions: tests/fresh_process.py
imports them in a fresh interpreter without pytest's settings.
"""

import json
import copy
import string
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy
import pytest
import spacy
import torch
from spacy.language import Language
from spacy.training import Example
from thinc.api import Adam, fix_random_seed

import spacy_spandec  # noqa: F401  (registrations)


def pytest_configure(config):
    # One intra-op thread in the pytest process only: on a busy 2-core machine
    # PyTorch's thread pool makes the tiny models here many times slower, not
    # faster. Nothing is exported to the environment, so subprocesses run at
    # torch's default thread count, as users do: every claim about running the
    # pipeline is checked there (test_default_threads.py: pipe/call/batch
    # sizes/to_bytes/pickle/reload/n_process/determinism and the same output
    # as at one thread, with calibrated offsets and temperature; the annotate
    # and render CLIs; resumable training; the memory stream; the project smoke
    # test). Scripts that import this module outside pytest are not affected
    # either.
    torch.set_num_threads(1)


# (text, [(entity text, label), ...]); every entity text occurs once in its
# sentence and the texts tokenize on whitespace with spaCy's English rules.
TRAIN_DATA: List[Tuple[str, List[Tuple[str, str]]]] = [
    (text, [tuple(ent) for ent in ents])
    for text, ents in json.loads(
        (Path(__file__).parent / "fixtures" / "small_ner.json").read_text()
    )
]
LABELS = ("LOC", "ORG", "PER")

CNN_TOK2VEC = {
    "@architectures": "spacy.HashEmbedCNN.v2",
    "width": 64,
    "depth": 2,
    "embed_size": 500,
    "window_size": 1,
    "maxout_pieces": 3,
    "subword_features": True,
    "pretrained_vectors": None,
}
# Learning rate that overfits TRAIN_DATA in well under 100 updates.
LEARN_RATE = 0.003


def char_spans(text: str, ents: List[Tuple[str, str]]) -> List[Tuple[int, int, str]]:
    out = []
    for ent_text, label in ents:
        start = text.index(ent_text)
        out.append((start, start + len(ent_text), label))
    return out


def make_examples(nlp: Language, data=TRAIN_DATA) -> List[Example]:
    """Examples whose reference doc.ents hold the gold (same tokenization)."""
    examples = []
    for text, ents in data:
        reference = nlp.make_doc(text)
        spans = [reference.char_span(s, e, label=label) for s, e, label in char_spans(text, ents)]
        assert all(span is not None for span in spans), text
        reference.ents = spans
        examples.append(Example(nlp.make_doc(text), reference))
    return examples


def make_cnn_nlp(model: Optional[Dict] = None, lang: str = "en", **component: object) -> Language:
    """A blank pipeline with `spandec_ner` on its own small CNN tok2vec."""
    model_cfg = {"n_heads": 4, "tok2vec": copy.deepcopy(CNN_TOK2VEC)}
    model_cfg.update(model or {})
    config = {"model": model_cfg, "sf_threshold": 0.0}
    config.update(component)
    nlp = spacy.blank(lang)
    nlp.add_pipe("spandec_ner", config=config)
    return nlp


def train(
    nlp: Language, examples: List[Example], n_updates: int = 60, seed: int = 0, drop: float = 0.0
) -> List[float]:
    """Full-batch updates; returns the loss of every update."""
    fix_random_seed(seed)
    nlp.initialize(lambda: examples)
    optimizer = Adam(LEARN_RATE)
    history = []
    for _ in range(n_updates):
        losses: Dict[str, float] = {}
        nlp.update(examples, sgd=optimizer, losses=losses, drop=drop)
        history.append(losses["spandec_ner"])
    return history


def training_losses(
    make_nlp: Callable[[], Language], seed: int, n_updates: int = 20, lr: float = LEARN_RATE
) -> List[float]:
    """Losses of the first updates from a fixed seed, with the shipped decoder
    dropout and `spacy train`'s default dropout (0.1) on."""
    fix_random_seed(seed)
    nlp = make_nlp()
    examples = make_examples(nlp)
    nlp.initialize(lambda: examples)
    optimizer = Adam(lr)
    history = []
    for _ in range(n_updates):
        losses: Dict[str, float] = {}
        nlp.update(examples, sgd=optimizer, losses=losses, drop=0.1)
        history.append(losses["spandec_ner"])
    return history


# Comparing outputs ------------------------------------------------------------------

# Texts for "every way to run a pipeline gives the same output": odd characters,
# empty and whitespace-only docs, long docs and docs of very different lengths
# (spacy-transformers pads every batch to its longest doc).
EQUIVALENCE_TEXTS = [
    "",
    " ",
    "\t\n",
    "\u3000\u00a0",
    "Berlin",
    "\x00",
    "\x00\x01\x1f Angela Merkel met Emmanuel Macron in Berlin .\x7f",
    "Angela Merkel met Emmanuel Macron in Berlin .",
    "Angela Merkel 👩\u200d👩\u200d👧 met Emmanuel Macron in Berlin 🇩🇪 .",
    "Apple\u200bopened a new office in London\ufeff .",
    "Tokyo is the capital of Japan .\n\n東京は日本の首都です。",
    "مرحبا Barack Obama spoke at Harvard University yesterday שלום .",
    "\u202eMaria Garcia works for Google in Madrid .\u202c",
    "Zu\u0308rich and Dvořák met John Smith in Paris .",
    "The\tUnited\tNations\tmet\tin\tGeneva\t.",
    "Elon Musk founded SpaceX in California .\r\nSiemens hired Peter Weber in Munich .",
    "Microsoft  and  Amazon  compete  in  Seattle  .",
    "\n\nThe New York Stock Exchange closed early on Friday .\n\n",
    "e\u0301 \u0301 n\u0303o Angela Merkel",
    "😀😀😀 Apple 😀 Google 😀",
    "a" * 300,
    "Angela" + "\u200d" * 20 + "Merkel",
    " ".join(text for text, _ in TRAIN_DATA),
    "\n".join(text for text, _ in TRAIN_DATA[:6]),
    "Nobody saw anything unusual today .",
    "Paris Rome Tokyo Berlin Madrid Seattle Geneva Munich London California Japan",
    "ｆｕｌｌｗｉｄｔｈ Ｔｏｋｙｏ",
    "\x0b\x0cBerlin\x0b",
    "One",
    " ".join(["Siemens hired Peter Weber in Munich ."] * 15),
]


def doc_outputs(doc, key: str = "spandec") -> Dict[str, list]:
    """What `spandec_ner` wrote on a doc, as JSON-friendly values (so a
    subprocess can print them and the test compare them)."""
    group = doc.spans[key]
    return {
        "text": doc.text,
        "ents": [[e.start, e.end, e.label_] for e in doc.ents],
        "spans": [[s.start, s.end, s.label_] for s in group],
        "scores": [float(score) for score in group.attrs["scores"]],
        "counts": [group.attrs["n_candidates"], group.attrs["n_kept"]],
    }


def assert_same_outputs(
    docs_a: Sequence, docs_b: Sequence, what: str = "", atol: float = 1e-5
) -> None:
    """Same text, entities, spans and candidate counts, and scores within atol.
    Takes Docs or doc_outputs() dicts."""
    assert len(docs_a) == len(docs_b), what
    for i, (a, b) in enumerate(zip(docs_a, docs_b)):
        a = a if isinstance(a, dict) else doc_outputs(a)
        b = b if isinstance(b, dict) else doc_outputs(b)
        where = f"{what} doc {i}: {a['text'][:40]!r}"
        for field in ("text", "ents", "spans", "counts"):
            assert a[field] == b[field], f"{where}: {field} differ"
        assert numpy.allclose(a["scores"], b["scores"], rtol=0, atol=atol), where


@pytest.fixture(scope="session")
def train_data():
    return TRAIN_DATA


@pytest.fixture
def cnn_nlp_factory() -> Callable[..., Language]:
    """make_cnn_nlp(model={...}, **component_config) -> untrained nlp."""
    return make_cnn_nlp


@pytest.fixture
def examples_factory() -> Callable[..., List[Example]]:
    return make_examples


@pytest.fixture
def trainer() -> Callable[..., List[float]]:
    return train


@pytest.fixture(scope="session")
def trained_losses() -> Dict[str, object]:
    """CNN `spandec_ner` (span filter on, sf_threshold 0) overfitted on TRAIN_DATA,
    with the loss of every update."""
    nlp = make_cnn_nlp()
    losses = train(nlp, make_examples(nlp), n_updates=80)
    return {"nlp": nlp, "losses": losses}


@pytest.fixture(scope="session")
def trained_nlp(trained_losses) -> Language:
    """The session's trained CNN pipeline. Shared by many tests: a test that
    changes a setting on it must restore it."""
    return trained_losses["nlp"]


@pytest.fixture(scope="session")
def trained_dir(trained_nlp, tmp_path_factory):
    path = tmp_path_factory.mktemp("trained") / "pipeline"
    trained_nlp.to_disk(path)
    return path


# Tiny random BERT ---------------------------------------------------------------


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory):
    return build_tiny_bert(tmp_path_factory.mktemp("tiny_bert"))


def build_tiny_bert(path: Path) -> Path:
    """A randomly initialised 2-layer, 32-wide BERT + WordPiece tokenizer on disk."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab += list(string.ascii_lowercase)
    vocab += ["##" + c for c in string.ascii_lowercase]
    vocab += list(string.digits) + ["##" + c for c in string.digits]
    vocab += list(string.punctuation)
    words = sorted({w.lower() for text, _ in TRAIN_DATA for w in text.split()})
    vocab += [w for w in words if w not in vocab]
    vocab_file = path / "vocab.txt"
    vocab_file.write_text("\n".join(vocab) + "\n", encoding="utf8")
    tokenizer = BertTokenizerFast(vocab_file=str(vocab_file), do_lower_case=True)
    tokenizer.save_pretrained(str(path))
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=512,
    )
    BertModel(config).save_pretrained(str(path))
    return path


def make_bert_nlp(bert_dir, **component: object) -> Language:
    """`transformer` (tiny BERT, last layer dropped) + `spandec_ner` on its listener."""
    nlp = spacy.blank("en")
    nlp.add_pipe(
        "transformer",
        config={
            "model": {
                "@architectures": "spacy-transformers.TransformerModel.v3",
                "name": str(bert_dir),
                "get_spans": {
                    "@span_getters": "spacy-transformers.strided_spans.v1",
                    "window": 128,
                    "stride": 96,
                },
                "tokenizer_config": {"use_fast": True},
                "transformer_config": {"num_hidden_layers": 1},
                "mixed_precision": False,
            }
        },
    )
    config = {"model": {"n_heads": 4}}
    config.update(component)
    nlp.add_pipe("spandec_ner", config=config)
    return nlp


@pytest.fixture
def bert_nlp(tiny_bert_dir) -> Language:
    return make_bert_nlp(tiny_bert_dir)
