"""`spacy-spandec.AdamW.v1` and `spacy-spandec.warmup_linear_ratio.v1`."""

from itertools import islice

import numpy
import pytest
from spacy.util import registry
from thinc.api import Config

from spacy_spandec.candidates import max_window_length
from spacy_spandec.layers.decoder import SpanDecNet

OPTIMIZER_CFG = """
[optimizer]
@optimizers = "spacy-spandec.AdamW.v1"
learn_rate = 0.001
weight_decay = 0.01
grad_clip = 1.0
new_weights_lr_factor = 10.0
new_weights = ["spandec.*","W","b"]
"""


def make_optimizer(**overrides):
    config = Config().from_str(OPTIMIZER_CFG)
    config["optimizer"].update(overrides)
    return registry.resolve(config)["optimizer"]


def step(optimizer, name, key_id, weights, gradient):
    """Apply one update to copies; returns the weight change."""
    new, _ = optimizer((key_id, name), weights.copy(), gradient.copy())
    return new - weights


@pytest.fixture
def params():
    rng = numpy.random.default_rng(0)
    weights = rng.normal(size=(6, 5)).astype("float32")
    gradient = (rng.normal(size=(6, 5)) * 0.01).astype("float32")
    return weights, gradient


@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_new_weights_get_factor_times_the_step(params, weight_decay):
    weights, gradient = params
    optimizer = make_optimizer(weight_decay=weight_decay)
    old = step(optimizer, "encoder.layer.0.attention.self.query.weight", 1, weights, gradient)
    new = step(optimizer, "spandec.decoder.q_proj.weight", 2, weights, gradient)
    assert numpy.abs(old).max() > 0
    numpy.testing.assert_allclose(new, 10.0 * old, rtol=1e-3, atol=1e-9)


@pytest.mark.parametrize(
    "name,is_new",
    [
        ("spandec.decoder.m_start", True),
        ("spandec.span_filter.linear.bias", True),
        ("W", True),
        ("b", True),
        ("E", False),
        ("Wx", False),
        ("embeddings.word_embeddings.weight", False),
        ("encoder.layer.0.output.dense.bias", False),
        ("not_spandec.weight", False),
    ],
)
def test_factor_applies_only_to_matching_names(params, name, is_new):
    weights, gradient = params
    optimizer = make_optimizer(new_weights_lr_factor=4.0)
    base = step(optimizer, "pretrained.weight", 1, weights, gradient)
    delta = step(optimizer, name, 2, weights, gradient)
    ratio = numpy.abs(delta).sum() / numpy.abs(base).sum()
    assert ratio == pytest.approx(4.0 if is_new else 1.0, rel=1e-3)


def test_custom_patterns(params):
    weights, gradient = params
    optimizer = make_optimizer(new_weights=["head.*"], new_weights_lr_factor=3.0)
    base = step(optimizer, "spandec.decoder.m_start", 1, weights, gradient)
    head = step(optimizer, "head.weight", 2, weights, gradient)
    numpy.testing.assert_allclose(head, 3.0 * base, rtol=1e-3, atol=1e-9)


def test_every_decoder_parameter_is_a_new_weight(params):
    """The decoder's PyTorch names all match the default `spandec.*` pattern."""
    weights, gradient = params
    net = SpanDecNet(
        {
            "width": 8,
            "n_classes": 3,
            "n_heads": 2,
            "mlp_ratio": 2.0,
            "dropout": 0.0,
            "n_positions": max_window_length(4, 8, 2),
            "span_filter": True,
        }
    )
    names = [name for name, _ in net.named_parameters()]
    assert any(name.startswith("spandec.span_filter.") for name in names)
    optimizer = make_optimizer()
    base = numpy.abs(step(optimizer, "encoder.weight", 0, weights, gradient)).sum()
    for i, name in enumerate(names, start=1):
        delta = numpy.abs(step(optimizer, name, i, weights, gradient)).sum()
        assert delta == pytest.approx(10.0 * base, rel=1e-3), name


def test_optimizer_is_decoupled_weight_decay_adamw():
    optimizer = make_optimizer()
    assert optimizer.L2 == pytest.approx(0.01)
    assert optimizer.L2_is_weight_decay
    assert optimizer.grad_clip == pytest.approx(1.0)


def test_rejects_non_positive_factor():
    with pytest.raises(ValueError, match="new_weights_lr_factor"):
        make_optimizer(new_weights_lr_factor=0.0)


def test_warmup_schedule_rises_then_decays():
    schedule = registry.schedules.get("spacy-spandec.warmup_linear_ratio.v1")
    rates = list(islice(schedule(initial_rate=1e-3, total_steps=100, warmup_ratio=0.1), 101))
    peak = int(numpy.argmax(rates))
    assert peak == 10
    assert rates[peak] == pytest.approx(1e-3)
    assert all(a < b for a, b in zip(rates[:peak], rates[1 : peak + 1]))
    assert all(a > b for a, b in zip(rates[peak:100], rates[peak + 1 : 101]))
    assert rates[0] == 0.0 and rates[100] == 0.0


def test_warmup_schedule_drives_the_optimizer(params):
    config = Config().from_str(OPTIMIZER_CFG)
    config["optimizer"]["learn_rate"] = {
        "@schedules": "spacy-spandec.warmup_linear_ratio.v1",
        "initial_rate": 1.0,
        "total_steps": 20,
        "warmup_ratio": 0.25,
    }
    optimizer = registry.resolve(config)["optimizer"]
    seen = []
    for _ in range(20):
        seen.append(optimizer.learn_rate)
        optimizer.step_schedules()
    assert seen[:6] == pytest.approx([0.0, 0.2, 0.4, 0.6, 0.8, 1.0])
    assert seen[5:] == sorted(seen[5:], reverse=True)
    assert seen[-1] < 0.1


def test_warmup_ratio_must_be_a_fraction():
    schedule = registry.schedules.get("spacy-spandec.warmup_linear_ratio.v1")
    with pytest.raises(ValueError, match="warmup_ratio"):
        schedule(initial_rate=1e-3, total_steps=10, warmup_ratio=1.0)
