"""The `spandec_ner` pipeline component: SpanDec / SF-SpanDec as a TrainablePipe."""

import math
import warnings
from contextlib import contextmanager
from itertools import islice
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, List, Mapping, Optional, Tuple, Union

import numpy
from spacy.language import Language
from spacy.pipeline import TrainablePipe
from spacy.tokens import Doc, Span, SpanGroup
from spacy.training import Example, validate_examples, validate_get_examples
from spacy.util import SimpleFrozenList
from spacy.vocab import Vocab
from thinc.api import Config, Model, Optimizer, set_dropout_rate

from .candidates import Candidates, near_gold
from .layers.spandec_model import (
    SampledDocs,
    SpanDecoderLoadError,
    SpanDecOutput,
    decoder_net,
    is_built,
    using_net,
)
from .scoring import ENTS_SCORE_WEIGHTS, gold_spans
from .serving import check_inference_dtype, invalidate, serving_view

DEFAULT_MODEL_CONFIG = """
[model]
@architectures = "spacy-spandec.SpanDecoder.v2"
max_span_length = 8
n_heads = 12
mlp_ratio = 4.0
dropout = 0.1
context_window = 64
block_size = 64
span_filter = true
mixed_precision = false

[model.tok2vec]
@architectures = "spacy-transformers.TransformerListener.v1"
grad_factor = 1.0
upstream = "*"

[model.tok2vec.pooling]
@layers = "reduce_mean.v1"
"""
DEFAULT_MODEL = Config().from_str(DEFAULT_MODEL_CONFIG)["model"]
LISTENER_NAMES = ("transformer-listener", "tok2vec-listener")
# The component's settings and their defaults, which SpanDecNER's keyword
# arguments read rather than repeat.
DEFAULT_CONFIG: Dict[str, Any] = {
    "model": DEFAULT_MODEL,
    "spans_key": "spandec",
    "gold_spans_key": None,
    "sf_threshold": 0.0,
    "outside_bias": 0.0,
    "label_biases": {},
    "temperature": 1.0,
    "sf_loss_weight": 1.0,
    "negative_weight": 0.3,
    "negative_sampling": True,
    "keep_near_negatives": True,
    "near_negative_rate": 1.0,
    "write_ents": True,
    "overwrite_ents": True,
    "inference_dtype": "float32",
    "scorer": {"@scorers": "spacy-spandec.scorer.v1"},
}


@Language.factory(
    "spandec_ner",
    assigns=["doc.ents", "doc.spans"],
    default_config=DEFAULT_CONFIG,
    default_score_weights=ENTS_SCORE_WEIGHTS,
)
def make_spandec_ner(
    nlp: Language,
    name: str,
    model: Model[List[Doc], SpanDecOutput],
    spans_key: str,
    gold_spans_key: Optional[str],
    sf_threshold: float,
    outside_bias: float,
    label_biases: Dict[str, float],
    temperature: float,
    sf_loss_weight: float,
    negative_weight: float,
    negative_sampling: bool,
    keep_near_negatives: bool,
    near_negative_rate: float,
    write_ents: bool,
    overwrite_ents: bool,
    inference_dtype: str,
    scorer: Optional[Callable],
) -> "SpanDecNER":
    """Span-based NER: every span up to max_span_length is classified by a
    light cross-attention decoder over the token vectors.

    nlp (Language): the pipeline.
    name (str): the component's name.
    model (Model[List[Doc], SpanDecOutput]): a SpanDecoder architecture.
    spans_key (str): doc.spans key for all predicted spans (overlaps allowed).
    gold_spans_key (Optional[str]): take gold from doc.spans[key] (nested)
        instead of doc.ents.
    sf_threshold (float): SF pruning threshold; 0 decodes every span (plain SpanDec).
    outside_bias (float): added to the O (not-an-entity) logit of every span
        before decoding; below 0 trades precision for recall. 0 is the plain
        argmax; `python -m spacy_spandec calibrate` can tune it on the dev set.
    label_biases (Dict[str, float]): added to the logit of each named label
        before decoding: above 0 predicts that label more often (recall up),
        below 0 less often. `calibrate --label-biases` tunes them on dev.
    temperature (float): the scores in doc.spans are the softmax of the
        (offset) logits divided by it; it never changes which label wins. Above
        1 makes over-confident scores honest; `calibrate --temperature` fits
        it on dev.
    sf_loss_weight (float): weight of the span-filter loss added to the span loss.
    negative_weight (float): weight of the O (not-an-entity) spans in the
        span loss, a weighted mean as in torch's cross-entropy; below 1 lets
        the rare entity spans (about 2% of the candidates) count for more (spaCy's
        spancat has the same setting). 0.3 learns faster than the paper's
        plain mean (1.0) and needs no O offset at decoding: results/ablations/.
    negative_sampling (bool): in training, decode each far O span (see
        keep_near_negatives) with probability negative_weight (weight 1)
        rather than every O span with weight negative_weight: the same loss in
        expectation, with the span decoder run on fewer candidates (98% of them
        are O). False decodes every candidate, the paper's loss.
    keep_near_negatives (bool): with negative_sampling, always decode the O
        spans that overlap or touch a gold span (weight negative_weight, as
        without sampling) and sample only the far ones: the boundary errors the
        model must learn to avoid are never left out of a step. False samples
        every O span alike; ignored without negative_sampling.
    near_negative_rate (float): with keep_near_negatives, the probability
        that a near O span is decoded, weighted negative_weight /
        near_negative_rate so that the loss keeps its expectation. 1 decodes
        them all; below 1 decodes fewer spans per step (near ones are about
        44% of the candidates), a cheaper step.
    write_ents (bool): also write a flat, greedy-by-score selection to doc.ents.
    overwrite_ents (bool): replace existing doc.ents rather than keep them.
    inference_dtype (str): "float32", or "int8" / "bfloat16" to predict with
        a copy of the decoder whose per-span Linear layers are int8 / bf16
        (CPU serving; training and saving always use the float32 weights).
    scorer (Optional[Callable]): the scoring function, spacy-spandec.scorer.v1.
    RETURNS (SpanDecNER): the component.
    """
    return SpanDecNER(
        nlp.vocab,
        model,
        name,
        spans_key=spans_key,
        gold_spans_key=gold_spans_key,
        sf_threshold=sf_threshold,
        outside_bias=outside_bias,
        label_biases=label_biases,
        temperature=temperature,
        sf_loss_weight=sf_loss_weight,
        negative_weight=negative_weight,
        negative_sampling=negative_sampling,
        keep_near_negatives=keep_near_negatives,
        near_negative_rate=near_negative_rate,
        write_ents=write_ents,
        overwrite_ents=overwrite_ents,
        inference_dtype=inference_dtype,
        scorer=scorer,
    )


@contextmanager
def _load_errors(name: str, source: str) -> Iterator[None]:
    """Turn msgpack/safetensors failures deep inside Thinc, and a model file
    that cannot be read, into one message."""
    try:
        yield
    except SpanDecoderLoadError:
        raise
    except (ValueError, KeyError, TypeError) as err:
        raise SpanDecoderLoadError(
            f"Cannot load the '{name}' component from {source}: its model data is "
            f"corrupt, truncated or from an incompatible version ({type(err).__name__}: "
            f"{err}). Re-save the pipeline with nlp.to_disk() or re-train it."
        ) from None
    except OSError as err:  # a missing, unreadable or non-file `model`
        raise SpanDecoderLoadError(
            f"Cannot load the '{name}' component from {source}: cannot read "
            f"{err.filename or source} ({type(err).__name__}: {err.strerror or err}). Copy the "
            "whole pipeline directory that nlp.to_disk() wrote (including "
            f"{name}/model), or re-save the pipeline with nlp.to_disk() or re-train it."
        ) from None


def _span_classes(
    dense: numpy.ndarray,
    offsets: numpy.ndarray,
    doc_ids: numpy.ndarray,
    starts: numpy.ndarray,
    ends: numpy.ndarray,
) -> numpy.ndarray:
    """The gold class of each span, looked up in a batch's gold table
    (`offsets`: each doc's first token in the batch)."""
    return dense[offsets[doc_ids] + starts, ends - starts - 1]


def _decoded_classes(dense: numpy.ndarray, output: SpanDecOutput) -> numpy.ndarray:
    """The gold class of each span the model decoded in `output`."""
    offsets = numpy.concatenate([[0], numpy.cumsum(output.lengths)]).astype("int64")
    return _span_classes(dense, offsets, output.doc_ids, output.starts, output.ends)


class SpanDecNER(TrainablePipe):
    """Span-based NER with SpanDec / SF-SpanDec: every candidate span is
    classified over O + labels; all predicted spans go to doc.spans, a flat
    selection to doc.ents. Settings are those of the `spandec_ner` factory.
    """

    def __init__(
        self,
        vocab: Vocab,
        model: Model[List[Doc], SpanDecOutput],
        name: str = "spandec_ner",
        *,
        spans_key: str = DEFAULT_CONFIG["spans_key"],
        gold_spans_key: Optional[str] = DEFAULT_CONFIG["gold_spans_key"],
        sf_threshold: float = DEFAULT_CONFIG["sf_threshold"],
        outside_bias: float = DEFAULT_CONFIG["outside_bias"],
        label_biases: Mapping[str, float] = DEFAULT_CONFIG["label_biases"],
        temperature: float = DEFAULT_CONFIG["temperature"],
        sf_loss_weight: float = DEFAULT_CONFIG["sf_loss_weight"],
        negative_weight: float = DEFAULT_CONFIG["negative_weight"],
        negative_sampling: bool = DEFAULT_CONFIG["negative_sampling"],
        keep_near_negatives: bool = DEFAULT_CONFIG["keep_near_negatives"],
        near_negative_rate: float = DEFAULT_CONFIG["near_negative_rate"],
        write_ents: bool = DEFAULT_CONFIG["write_ents"],
        overwrite_ents: bool = DEFAULT_CONFIG["overwrite_ents"],
        inference_dtype: str = DEFAULT_CONFIG["inference_dtype"],
        scorer: Optional[Callable] = None,
    ) -> None:
        """Initialize the component; `make_spandec_ner` documents the settings.

        vocab (Vocab): the shared vocabulary.
        model (Model[List[Doc], SpanDecOutput]): a SpanDecoder architecture.
        name (str): the component's name.
        scorer (Optional[Callable]): the scoring function; None scores nothing.
        """
        if sf_loss_weight < 0:
            raise ValueError(f"sf_loss_weight must be >= 0, got {sf_loss_weight}.")
        if not negative_weight > 0:
            raise ValueError(
                f"negative_weight must be > 0, got {negative_weight}. Use 1 for the plain "
                "mean over spans, a value below 1 to down-weight the O spans."
            )
        if negative_sampling and negative_weight > 1:
            raise ValueError(
                f"negative_sampling keeps each O span with probability negative_weight, "
                f"which must then be <= 1, got {negative_weight}. Set negative_sampling "
                "= false to decode every O span with a weight above 1."
            )
        if not 0 < near_negative_rate <= 1:
            raise ValueError(
                f"near_negative_rate is the probability that an O span near a gold span is "
                f"decoded in training, so it must be in (0, 1], got {near_negative_rate}. "
                "Use 1 to decode them all."
            )
        if not spans_key:
            raise ValueError("spans_key must be a non-empty string.")
        if sf_threshold > 0 and not model.attrs.get("span_filter", False):
            raise ValueError(
                f"sf_threshold={sf_threshold} needs the span filter, but the model has "
                "span_filter = false. Set [components.<name>.model] span_filter = true "
                "and retrain, or set sf_threshold = 0."
            )
        self.vocab = vocab
        self.model = model
        self.name = name
        self.spans_key = spans_key
        self.gold_spans_key = gold_spans_key
        self.sf_loss_weight = sf_loss_weight
        self.negative_weight = float(negative_weight)
        self.negative_sampling = bool(negative_sampling)
        self.keep_near_negatives = bool(keep_near_negatives)
        self.near_negative_rate = float(near_negative_rate)
        self.write_ents = write_ents
        self.overwrite_ents = overwrite_ents
        self.scorer = scorer
        self.cfg: Dict[str, Any] = {"labels": []}
        self.sf_threshold = sf_threshold
        self.outside_bias = outside_bias
        self.label_biases = label_biases  # the setter copies it
        self.temperature = temperature
        self.inference_dtype = inference_dtype

    @property
    def sf_threshold(self) -> float:
        """The pruning threshold. It lives on the component (i.e. in the
        pipeline config), not in the serialized model, so a value written to
        config.cfg or passed as a config override at load is the one used."""
        return self._sf_threshold

    @sf_threshold.setter
    def sf_threshold(self, value: float) -> None:
        if not 0.0 <= value <= 1.0:
            raise ValueError(
                f"sf_threshold must be a probability in [0, 1], got {value}. "
                "Use 0 to decode every span (SpanDec) or a value tuned on the dev "
                "set (e.g. with `python -m spacy_spandec calibrate`)."
            )
        self._sf_threshold = float(value)
        self._threshold_to_model()

    def _threshold_to_model(self) -> None:
        """The Thinc model reads the threshold from its attrs, which loading
        its bytes overwrites with the value saved then: the component's value
        is copied there when it is set, after loading, and before predicting
        (in case the model or its attrs were replaced since)."""
        self.model.attrs["sf_threshold"] = self._sf_threshold

    @property
    def outside_bias(self) -> float:
        """Offset of the O logit at decoding. A model trained briefly is
        biased towards O (most candidate spans are O), so it is precise but
        misses entities; a negative offset tuned on dev moves it back."""
        return self._outside_bias

    @outside_bias.setter
    def outside_bias(self, value: float) -> None:
        if not _is_finite_number(value):
            raise ValueError(
                f"outside_bias must be a finite number (an offset of the O logit), got {value!r}. "
                "Use 0 for the plain argmax, a negative value to predict more entities."
            )
        self._outside_bias = float(value)

    @property
    def label_biases(self) -> Dict[str, float]:
        """Per-label offsets of the label logits at decoding (a copy; assign a
        new dict to change them)."""
        return dict(self._label_biases)

    @label_biases.setter
    def label_biases(self, value: Mapping[str, float]) -> None:
        if not isinstance(value, Mapping):
            raise ValueError(
                f"label_biases must be a mapping of label to offset, got {type(value).__name__}."
            )
        for label, bias in value.items():
            if not _is_finite_number(bias):
                raise ValueError(
                    f"label_biases[{label!r}] must be a finite number (an offset of its logit), got {bias!r}."
                )
        self._label_biases = {str(label): float(bias) for label, bias in value.items()}

    @property
    def temperature(self) -> float:
        """Divisor of the logits in the scores (not in the decision)."""
        return self._temperature

    @temperature.setter
    def temperature(self, value: float) -> None:
        if not (_is_finite_number(value) and value > 0):
            raise ValueError(
                f"temperature must be a positive finite number, got {value!r}. 1 leaves the scores as they are."
            )
        self._temperature = float(value)

    def _decoding_offsets(self) -> Optional[numpy.ndarray]:
        """The offsets added to every span's logits, [O, label_1, ...], or
        None when all are 0. Unknown labels in label_biases are an error: a
        typo would otherwise silently do nothing."""
        if not self._outside_bias and not any(self._label_biases.values()):
            return None
        labels = self.labels
        unknown = sorted(set(self._label_biases) - set(labels))
        if unknown:
            raise ValueError(
                f"label_biases names labels the component does not have: {unknown}. Its labels are {list(labels)}."
            )
        offsets = numpy.zeros((len(labels) + 1,), dtype="float32")
        offsets[0] = self._outside_bias
        for i, label in enumerate(labels, 1):
            offsets[i] = self._label_biases.get(label, 0.0)
        return offsets

    @property
    def inference_dtype(self) -> str:
        """Precision of the decoder at prediction: float32, int8 or bfloat16."""
        return self._inference_dtype

    @inference_dtype.setter
    def inference_dtype(self, value: str) -> None:
        self._inference_dtype = check_inference_dtype(value)

    @property
    def max_span_length(self) -> int:
        """The longest span the model can predict, in tokens."""
        return int(self.model.attrs["max_span_length"])

    @property
    def labels(self) -> Tuple[str, ...]:
        """The entity labels; class 0 of the model is O, class i + 1 labels[i]."""
        return tuple(self.cfg["labels"])

    @property
    def label_data(self) -> List[str]:
        """The labels, for `spacy init labels`."""
        return list(self.labels)

    def add_label(self, label: str) -> int:
        """Add a label before the model is initialized; afterwards its
        classifier has a fixed number of classes.

        label (str): the label to add.
        RETURNS (int): 1 if the label was added, 0 if it was already there.
        """
        if not isinstance(label, str):
            raise ValueError(f"Labels must be strings, got {label!r}.")
        if label in self.labels:
            return 0
        if is_built(self.model):
            raise ValueError(
                f"Cannot add label {label!r} to '{self.name}': the model is already "
                "initialized/trained with labels "
                f"{list(self.labels)}. Add all labels before nlp.initialize(), or "
                "re-initialize the component with the new label set."
            )
        self.cfg["labels"].append(label)
        self.vocab.strings.add(label)
        return 1

    # Prediction ---------------------------------------------------------

    def predict(self, docs: Iterable[Doc]) -> SpanDecOutput:
        """Decode the candidate spans of a batch, without modifying the docs,
        through the serving view of `inference_dtype`.

        docs (Iterable[Doc]): the docs to predict.
        RETURNS (SpanDecOutput): the logits of the decoded (kept) spans.
        """
        docs = list(docs)
        if not is_built(self.model):
            raise ValueError(
                f"The '{self.name}' component is not initialized. Call "
                "nlp.initialize() (or train with `spacy train`) before using it, "
                "or load a trained pipeline with spacy.load()."
            )
        self._threshold_to_model()
        with using_net(self.model, serving_view(decoder_net(self.model), self.inference_dtype)):
            return self.model.predict(docs)

    def finish_update(self, sgd: Optimizer) -> None:
        """Apply the update, and drop the serving views of the old weights.

        sgd (Optimizer): the optimizer.
        """
        super().finish_update(sgd)
        invalidate(decoder_net(self.model))

    def set_annotations(self, docs: Iterable[Doc], output: SpanDecOutput) -> None:
        """Write every span whose best class is not O, with its probability,
        to doc.spans[spans_key], and if write_ents a flat selection to doc.ents.

        docs (Iterable[Doc]): the docs `output` was predicted for.
        output (SpanDecOutput): the result of `predict`.
        """
        docs = list(docs)
        labels = self.labels
        logits = self.model.ops.to_numpy(output.logits)
        if logits.shape[0]:
            offsets = self._decoding_offsets()
            if offsets is not None:
                logits = logits + offsets
            probs = softmax(logits if self._temperature == 1.0 else logits / self._temperature)
            best = probs.argmax(axis=1)
            scores = probs[numpy.arange(probs.shape[0]), best]
        else:
            best = numpy.zeros((0,), dtype="int64")
            scores = numpy.zeros((0,), dtype="float32")
        entity = best > 0
        ent_doc_ids = output.doc_ids[entity]
        ent_starts, ent_ends = output.starts[entity], output.ends[entity]
        ent_labels, ent_scores = best[entity] - 1, scores[entity]
        bounds = numpy.searchsorted(ent_doc_ids, numpy.arange(len(docs) + 1))
        for i, doc in enumerate(docs):
            lo, hi = int(bounds[i]), int(bounds[i + 1])
            order = numpy.lexsort((ent_labels[lo:hi], ent_ends[lo:hi], ent_starts[lo:hi]))
            spans, span_scores = [], []
            for k in order:
                j = lo + int(k)
                spans.append(
                    Span(
                        doc, int(ent_starts[j]), int(ent_ends[j]), label=labels[int(ent_labels[j])]
                    )
                )
                span_scores.append(float(ent_scores[j]))
            group = SpanGroup(doc, name=self.spans_key, spans=spans)
            group.attrs["scores"] = span_scores
            group.attrs["n_candidates"] = int(output.n_candidates[i])
            group.attrs["n_kept"] = int(output.n_kept[i])
            doc.spans[self.spans_key] = group
            if self.write_ents:
                self._write_ents(doc, spans, span_scores)

    def _write_ents(self, doc: Doc, spans: List[Span], scores: List[float]) -> None:
        """Flat entities: greedy by score, never overlapping each other or,
        when not overwriting, the entities already on the doc."""
        taken = numpy.zeros(len(doc), dtype=bool)
        kept: List[Span] = []
        if not self.overwrite_ents:
            kept = list(doc.ents)
            for ent in kept:
                taken[ent.start : ent.end] = True
        ranked = sorted(range(len(spans)), key=lambda k: (-scores[k], spans[k].start, spans[k].end))
        for k in ranked:
            span = spans[k]
            if not taken[span.start : span.end].any():
                taken[span.start : span.end] = True
                kept.append(span)
        doc.set_ents(sorted(kept, key=lambda s: s.start), default="outside")

    # Training -------------------------------------------------------------

    def initialize(
        self,
        get_examples: Callable[[], Iterable[Example]],
        *,
        nlp: Optional[Language] = None,
        labels: Optional[List[str]] = None,
    ) -> None:
        """Set the labels and build the decoder for them (initializing again
        rebuilds it), warning about gold spans the model cannot predict.

        get_examples (Callable[[], Iterable[Example]]): the training examples.
        nlp (Optional[Language]): the pipeline, to check that a listener's
            upstream component exists.
        labels (Optional[List[str]]): the labels; None takes them from the gold.
        """
        validate_get_examples(get_examples, "SpanDecNER.initialize")
        if nlp is not None:
            self._check_listeners(nlp)
        if labels is None:
            found = set()
            for eg in get_examples():
                found.update(
                    span.label_ for span in gold_spans(eg, self.gold_spans_key, aligned=False)
                )
            labels = sorted(found)
        for label in labels:
            if not isinstance(label, str):
                raise ValueError(f"Labels must be strings, got {label!r}.")
            self.vocab.strings.add(label)
        # Initializing (again) rebuilds the decoder for exactly these labels.
        self.cfg["labels"] = list(dict.fromkeys(labels))
        if not self.labels:
            raise ValueError(
                f"'{self.name}' found no entity labels: the training examples have no "
                f"gold {'doc.ents' if self.gold_spans_key is None else repr('doc.spans[' + self.gold_spans_key + ']')}. "
                "Pass labels=[...] to initialize, or check the training data."
            )
        self._warn_unreachable(get_examples)
        doc_sample = [eg.predicted for eg in islice(get_examples(), 10)]
        self.model.set_dim("nO", len(self.labels) + 1, force=True)
        self.model.initialize(X=doc_sample)

    def _check_listeners(self, nlp: Language) -> None:
        if not any(node.name in LISTENER_NAMES for node in self.model.walk()):
            return
        upstream = [
            name
            for name, pipe in nlp.pipeline
            if self.name in getattr(pipe, "listening_components", [])
        ]
        if not upstream:
            raise ValueError(
                f"'{self.name}' reads token vectors through a listener, but no "
                "'transformer' (or 'tok2vec') component earlier in the pipeline feeds "
                "it. Add one first, e.g. nlp.add_pipe('transformer', config=...) "
                f"before '{self.name}', or give the component its own tok2vec in "
                "[components.<name>.model.tok2vec]."
            )

    def _warn_unreachable(self, get_examples: Callable[[], Iterable[Example]]) -> None:
        total = too_long = on_space = 0
        for eg in get_examples():
            for span in gold_spans(eg, self.gold_spans_key, aligned=False):
                total += 1
                too_long += len(span) > self.max_span_length
                on_space += span[0].is_space or span[-1].is_space
        if on_space:
            warnings.warn(
                f"{on_space} of {total} gold spans start or end on a whitespace token; "
                f"'{self.name}' never predicts such spans (like spaCy's ner). Strip "
                "the whitespace from the gold spans.",
                UserWarning,
            )
        if too_long:
            warnings.warn(
                f"{too_long} of {total} gold spans in the training data are longer than "
                f"max_span_length={self.max_span_length} tokens: '{self.name}' cannot "
                "predict them and they count as errors. Raise max_span_length in "
                "[components.<name>.model] to cover them.",
                UserWarning,
            )

    def update(
        self,
        examples: Iterable[Example],
        *,
        drop: float = 0.0,
        sgd: Optional[Optimizer] = None,
        losses: Optional[Dict[str, float]] = None,
    ) -> Dict[str, float]:
        """Learn from a batch of examples: one forward and backward pass, and
        an optimizer step if `sgd` is given.

        examples (Iterable[Example]): the batch.
        drop (float): the dropout rate.
        sgd (Optional[Optimizer]): the optimizer; None only accumulates gradients.
        losses (Optional[Dict[str, float]]): losses to add this batch's to.
        RETURNS (Dict[str, float]): the updated losses.
        """
        if losses is None:
            losses = {}
        losses.setdefault(self.name, 0.0)
        examples = list(examples)
        validate_examples(examples, "SpanDecNER.update")
        if not any(len(eg.predicted) for eg in examples):
            return losses
        set_dropout_rate(self.model, drop)
        docs: List[Doc] = [eg.predicted for eg in examples]
        dense, tokens = self._gold_table(examples)
        if self.negative_sampling:
            docs = SampledDocs(docs, self._sample_negatives(dense, tokens))
        output, backprop = self.model.begin_update(docs)
        loss, gradients = self._loss(output, dense, tokens)
        backprop(gradients)
        if sgd is not None:
            self.finish_update(sgd)
        losses[self.name] += loss
        return losses

    def get_loss(
        self, examples: Iterable[Example], output: SpanDecOutput
    ) -> Tuple[float, Tuple[Any, Optional[Any]]]:
        """(O-weighted) cross-entropy over decoded spans + weighted BCE of the span filter.

        examples (Iterable[Example]): the batch `output` was predicted for.
        output (SpanDecOutput): the model's output in training.
        RETURNS (Tuple[float, Tuple[Any, Optional[Any]]]): the loss and the
            gradients of the span logits and (None without a span-filter
            loss) of the token logits.
        """
        return self._loss(output, *self._gold_table(list(examples)))

    def _loss(
        self, output: SpanDecOutput, dense: numpy.ndarray, token_targets: numpy.ndarray
    ) -> Tuple[float, Tuple[Any, Optional[Any]]]:
        """get_loss on the batch's gold table (`_gold_table`), which update
        has built already."""
        ops = self.model.ops
        span_targets = _decoded_classes(dense, output)
        logits = ops.to_numpy(output.logits)
        n_spans = logits.shape[0]
        loss = 0.0
        d_logits = numpy.zeros_like(logits)
        if n_spans:
            log_probs = softmax(logits, log=True)
            rows = numpy.arange(n_spans)
            # Sampled O spans stand for the others: they count in full. O spans
            # near a gold span were sampled at near_negative_rate (1: all of
            # them): they weigh negative_weight / that rate, so the loss has
            # the full recipe's expectation.
            o_weight: Any = self.negative_weight
            if output.sampled:
                o_weight = 1.0
                if self.keep_near_negatives:
                    near = near_gold(
                        token_targets, output.lengths, output.doc_ids, output.starts, output.ends
                    )
                    near_weight = self.negative_weight / self.near_negative_rate
                    o_weight = numpy.where(near, near_weight, 1.0)
            weights = numpy.where(span_targets == 0, o_weight, 1.0).astype(logits.dtype)
            weights /= weights.sum()
            loss += float(-(weights * log_probs[rows, span_targets]).sum())
            d_logits = numpy.exp(log_probs)
            d_logits[rows, span_targets] -= 1.0
            d_logits *= weights[:, None]
        d_token_logits = None
        if self.model.attrs["span_filter"] and self.sf_loss_weight > 0:
            token_logits = ops.to_numpy(output.token_logits).astype("float32")
            n_tokens = max(token_logits.shape[0], 1)
            probs = 1.0 / (1.0 + numpy.exp(-token_logits))
            eps = 1e-7
            bce = -(
                token_targets * numpy.log(probs + eps)
                + (1 - token_targets) * numpy.log(1 - probs + eps)
            )
            loss += self.sf_loss_weight * float(bce.sum() / n_tokens)
            d_token_logits = ops.asarray1f(self.sf_loss_weight * (probs - token_targets) / n_tokens)
        return loss, (ops.asarray2f(d_logits.astype("float32")), d_token_logits)

    def _targets(
        self, examples: List[Example], output: SpanDecOutput
    ) -> Tuple[numpy.ndarray, numpy.ndarray]:
        """Class index of every decoded span and entity/O of every token."""
        dense, tokens = self._gold_table(examples)
        return _decoded_classes(dense, output), tokens

    def _gold_table(self, examples: List[Example]) -> Tuple[numpy.ndarray, numpy.ndarray]:
        """The gold class of every (batch token, width - 1) span start, and
        entity/O of every token, on the predicted tokens of the batch.

        Gold is aligned onto the predicted tokenization first, so examples
        whose tokens differ from the gold still train.
        """
        max_len = self.max_span_length
        label_ids = {label: i + 1 for i, label in enumerate(self.labels)}
        lengths = [len(eg.predicted) for eg in examples]
        offsets = numpy.concatenate([[0], numpy.cumsum(lengths)]).astype("int64")
        dense = numpy.zeros((int(offsets[-1]), max_len), dtype="int64")
        tokens = numpy.zeros((int(offsets[-1]),), dtype="float32")
        for i, eg in enumerate(examples):
            for span in gold_spans(eg, self.gold_spans_key):
                if span.label_ not in label_ids:
                    raise ValueError(
                        f"Gold label {span.label_!r} is not a label of '{self.name}' "
                        f"({list(self.labels)}). Initialize the component on data that "
                        "contains it, or pass it in initialize(labels=[...])."
                    )
                start = offsets[i] + span.start
                tokens[start : offsets[i] + span.end] = 1.0
                if len(span) <= max_len:
                    dense[start, len(span) - 1] = label_ids[span.label_]
        return dense, tokens

    def _sample_negatives(
        self, dense: numpy.ndarray, tokens: numpy.ndarray
    ) -> Callable[[Candidates, numpy.ndarray], numpy.ndarray]:
        """The rule that keeps every gold span of the batch (`dense`, `tokens`:
        its `_gold_table`), with keep_near_negatives each O span that
        overlaps or touches one with probability near_negative_rate, and each
        other O span with probability negative_weight (numpy's global
        generator, which `spacy train` seeds; one draw per candidate)."""
        rate = self.negative_weight
        near_rate = self.near_negative_rate if self.keep_near_negatives else None

        def keep(cands: Candidates, offsets: numpy.ndarray) -> numpy.ndarray:
            gold = _span_classes(dense, offsets, cands.doc_ids, cands.starts, cands.ends) != 0
            draws = numpy.random.random(len(cands))
            if near_rate is None:
                return gold | (draws < rate)
            lengths = numpy.diff(numpy.append(offsets, tokens.shape[0]))
            near = near_gold(tokens, lengths, cands.doc_ids, cands.starts, cands.ends)
            return gold | (draws < numpy.where(near, near_rate, rate))

        return keep

    # Serialization ------------------------------------------------------------

    def from_bytes(
        self, bytes_data: bytes, *, exclude: Iterable[str] = SimpleFrozenList()
    ) -> "SpanDecNER":
        """Load the component; corrupt or mismatched data raises SpanDecoderLoadError.

        bytes_data (bytes): the data from `to_bytes`.
        exclude (Iterable[str]): fields not to load.
        RETURNS (SpanDecNER): the component.
        """
        with _load_errors(self.name, "bytes"):
            super().from_bytes(bytes_data, exclude=exclude)
        self._check_loaded_labels("bytes")
        self._threshold_to_model()
        return self

    def from_disk(
        self, path: Union[str, Path], *, exclude: Iterable[str] = SimpleFrozenList()
    ) -> "SpanDecNER":
        """Load the component; corrupt, missing or mismatched files raise
        SpanDecoderLoadError.

        path (Union[str, Path]): the directory `to_disk` wrote.
        exclude (Iterable[str]): fields not to load.
        RETURNS (SpanDecNER): the component.
        """
        with _load_errors(self.name, str(path)):
            super().from_disk(path, exclude=exclude)
        self._check_loaded_labels(str(path))
        self._threshold_to_model()
        return self

    def _check_loaded_labels(self, source: str) -> None:
        """The labels (cfg) and the classifier (model) are stored apart: refuse
        a pair that does not match now, not with an IndexError at prediction."""
        if not is_built(self.model):
            return
        net = decoder_net(self.model)
        expected = len(self.labels) + 1
        if int(net.config["n_classes"]) != expected or self.model.get_dim("nO") != expected:
            raise SpanDecoderLoadError(
                f"Cannot load the '{self.name}' component from {source}: its cfg lists "
                f"{len(self.labels)} labels {list(self.labels)} but its model was saved "
                f"with {int(net.config['n_classes']) - 1}. The files are corrupt or come "
                "from different pipelines; re-save the pipeline with nlp.to_disk() or "
                "re-train it."
            )

    # Scoring ----------------------------------------------------------------

    def score(self, examples: Iterable[Example], **kwargs: Any) -> Dict[str, Any]:
        """Score predicted examples; gold labels the model never learned are
        refused rather than counted as misses.

        examples (Iterable[Example]): the examples, predicted.
        RETURNS (Dict[str, Any]): the scores, ents_* and spans_<spans_key>_*.
        """
        examples = list(examples)
        validate_examples(examples, "SpanDecNER.score")
        unknown = set()
        for eg in examples:
            gold = gold_spans(eg, self.gold_spans_key, aligned=False)
            unknown.update(span.label_ for span in gold if span.label_ not in self.labels)
        if unknown and self.labels:
            raise ValueError(
                f"The evaluation data has gold labels that '{self.name}' was never "
                f"trained on: {sorted(unknown)} (model labels: {list(self.labels)}). "
                "Map them to the model's labels, drop them from the evaluation data, "
                "or train a model that includes them."
            )
        if self.scorer is None:
            return {}
        return self.scorer(
            examples, spans_key=self.spans_key, gold_spans_key=self.gold_spans_key, **kwargs
        )


def softmax(logits: numpy.ndarray, *, log: bool = False) -> numpy.ndarray:
    """Row-wise softmax (or log-softmax, which the loss needs to stay finite
    where a probability underflows), shifted by the row max so exp cannot
    overflow."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = numpy.exp(shifted)
    total = exp.sum(axis=1, keepdims=True)
    return shifted - numpy.log(total) if log else exp / total


def spandec_components(nlp: Language) -> List[Tuple[str, SpanDecNER]]:
    """The pipeline's spandec_ner components, found by class whatever their names."""
    return [(name, pipe) for name, pipe in nlp.pipeline if isinstance(pipe, SpanDecNER)]


def _is_finite_number(value: Any) -> bool:
    """An int or float (not a bool) that is neither inf nor NaN: what the
    logit offsets and the temperature accept."""
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
