"""Shared fixtures: a tiny labelled corpus, CNN and tiny-BERT pipelines.

Everything here is sized for a loaded 2-core machine: a 64-wide CNN tok2vec,
a 32-wide random BERT built on disk (no hub access), and one trained CNN
pipeline shared by the whole session.
"""
import json
import os
from pathlib import Path

# One intra-op thread: on a busy machine PyTorch's thread pool makes the tiny
# models here ~20x slower, not faster. Must be set before torch is imported.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import copy  # noqa: E402
import string  # noqa: E402
from typing import Callable, Dict, List, Optional, Tuple  # noqa: E402

import pytest  # noqa: E402
import spacy  # noqa: E402
import torch  # noqa: E402
from spacy.language import Language  # noqa: E402
from spacy.training import Example  # noqa: E402
from thinc.api import Adam, fix_random_seed  # noqa: E402

import spacy_spandec  # noqa: E402,F401  (registrations)

torch.set_num_threads(1)

# (text, [(entity text, label), ...]); every entity text occurs once in its
# sentence and the texts tokenize on whitespace with spaCy's English rules.
TRAIN_DATA: List[Tuple[str, List[Tuple[str, str]]]] = [
    (text, [tuple(ent) for ent in ents])
    for text, ents in json.loads((Path(__file__).parent / "fixtures" / "small_ner.json").read_text())
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
        spans = [reference.char_span(s, e, label=l) for s, e, l in char_spans(text, ents)]
        assert all(span is not None for span in spans), text
        reference.ents = spans
        examples.append(Example(nlp.make_doc(text), reference))
    return examples


def make_cnn_nlp(
    model: Optional[Dict] = None, lang: str = "en", **component: object
) -> Language:
    """A blank pipeline with `spandec_ner` on its own small CNN tok2vec."""
    model_cfg = {"n_heads": 4, "dropout": 0.0, "tok2vec": copy.deepcopy(CNN_TOK2VEC)}
    model_cfg.update(model or {})
    config = {"model": model_cfg, "sf_threshold": 0.0}
    config.update(component)
    nlp = spacy.blank(lang)
    nlp.add_pipe("spandec_ner", config=config)
    return nlp


def train(
    nlp: Language, examples: List[Example], n_updates: int = 60, seed: int = 0
) -> List[float]:
    """Full-batch updates; returns the loss of every update."""
    fix_random_seed(seed)
    nlp.initialize(lambda: examples)
    optimizer = Adam(LEARN_RATE)
    history = []
    for _ in range(n_updates):
        losses: Dict[str, float] = {}
        nlp.update(examples, sgd=optimizer, losses=losses)
        history.append(losses["spandec_ner"])
    return history


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
    """A randomly initialised 2-layer, 32-wide BERT + WordPiece tokenizer on disk."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    path = tmp_path_factory.mktemp("tiny_bert")
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
    config = {"model": {"n_heads": 4, "dropout": 0.0}}
    config.update(component)
    nlp.add_pipe("spandec_ner", config=config)
    return nlp


@pytest.fixture
def bert_nlp(tiny_bert_dir) -> Language:
    return make_bert_nlp(tiny_bert_dir)
