"""The span decoder's dropout: nn.Dropout's distribution from a cheaper mask."""

import math

import pytest
import torch

from spacy_spandec.layers.dropout import Dropout, dropout, dropout_mask


@pytest.mark.parametrize("p", [0.1, 0.3, 0.5, 0.9])
def test_mask_keeps_values_with_probability_one_minus_p(p):
    torch.manual_seed(0)
    n = 400_000
    kept = dropout_mask(torch.Size([n]), p, torch.device("cpu")).double().mean().item()
    # Five binomial standard deviations, far above the 1/65,536 rounding of p.
    assert abs(kept - (1.0 - p)) < 5 * math.sqrt(p * (1 - p) / n)


def test_mask_lanes_are_independent_of_their_position():
    """Each 64-bit draw feeds four neighbouring values; none of the four lanes
    (e.g. the sign-carrying top one) may keep more or less often."""
    torch.manual_seed(1)
    mask = dropout_mask(torch.Size([100_000, 4]), 0.5, torch.device("cpu")).double()
    per_lane = mask.mean(dim=0)
    assert torch.all((per_lane - 0.5).abs() < 5 * math.sqrt(0.25 / 100_000)), per_lane
    # Neighbouring lanes of one draw are uncorrelated.
    centred = mask - 0.5
    assert abs((centred[:, 0] * centred[:, 1]).mean().item()) < 0.005


def test_mask_has_any_shape_and_size():
    for shape in [(0,), (1,), (3, 5), (7, 2, 3)]:
        mask = dropout_mask(torch.Size(shape), 0.1, torch.device("cpu"))
        assert mask.shape == torch.Size(shape) and mask.dtype == torch.bool


def test_dropout_scales_kept_values_and_zeroes_the_rest():
    torch.manual_seed(2)
    x = torch.randn(50, 40)
    y = dropout(x, 0.2)
    kept = y != 0
    assert torch.allclose(y[kept], x[kept] / 0.8)
    assert 0.6 < kept.double().mean().item() < 0.95
    # Unbiased: the expectation of the output is the input.
    torch.manual_seed(3)
    ones = torch.ones(200_000)
    assert abs(dropout(ones, 0.3).mean().item() - 1.0) < 0.01


def test_dropout_gradient_is_the_mask_times_the_scale():
    torch.manual_seed(4)
    x = torch.randn(30, 20, requires_grad=True)
    y = dropout(x, 0.25)
    y.sum().backward()
    expected = (y != 0).to(x.dtype) / 0.75
    assert torch.allclose(x.grad, expected)


def test_dropout_follows_torch_seed():
    torch.manual_seed(5)
    a = dropout(torch.ones(1000), 0.5)
    torch.manual_seed(5)
    b = dropout(torch.ones(1000), 0.5)
    assert torch.equal(a, b)
    assert not torch.equal(a, dropout(torch.ones(1000), 0.5))


def test_edge_rates():
    x = torch.randn(10, 10)
    assert dropout(x, 0.0) is x
    assert torch.equal(dropout(x, 1.0), torch.zeros_like(x))


def test_module_is_identity_in_eval_and_validates_p():
    layer = Dropout(0.5)
    x = torch.randn(8, 8)
    layer.eval()
    assert layer(x) is x
    layer.train()
    assert (layer(x) == 0).any()
    assert layer.state_dict() == {}
    with pytest.raises(ValueError, match="between 0 and 1"):
        Dropout(1.5)
