"""Dropout whose mask costs a fraction of `nn.Dropout`'s on CPU.

The span decoder drops out activations of every decoded span, about 2n x
(2 + mlp_ratio) x width values per training step (millions), and on CPU
torch's `bernoulli_` draws one random number per value: in a training-step
profile it took as long as the decoder's MLP matmuls. Here one 64-bit draw
gives four 16-bit lanes, each compared with a threshold: the same
keep-with-probability-1-p mask and 1/(1-p) scaling, with p rounded to a
multiple of 1/65,536, from torch's seeded generator (so a fixed seed still
gives identical runs). Not a model change: the layer has no weights and is
the identity at inference.
"""

import torch
from torch import nn

LANES = 4  # 16-bit lanes per 64-bit draw
LANE_VALUES = 1 << 16
INT64_MIN = -(1 << 63)


def dropout_mask(shape: torch.Size, p: float, device: torch.device) -> torch.Tensor:
    """Boolean mask of `shape`, each value True (kept) with probability 1 - p
    (p rounded to a multiple of 1/65,536)."""
    n = shape.numel()
    words = torch.empty(((n + LANES - 1) // LANES,), dtype=torch.int64, device=device)
    lanes = words.random_(INT64_MIN, None).view(torch.int16)[:n].view(shape)
    return lanes >= round(p * LANE_VALUES) - LANE_VALUES // 2


def dropout(x: torch.Tensor, p: float) -> torch.Tensor:
    """Training-mode dropout of `x` with rate p."""
    if p <= 0.0:
        return x
    if p >= 1.0:
        return x * 0.0
    return torch.where(dropout_mask(x.shape, p, x.device), x * (1.0 / (1.0 - p)), 0.0)


class Dropout(nn.Module):
    """Drop-in for `nn.Dropout(p)` in the span decoder (see module docstring).

    p (float): the probability of zeroing each value in training.
    """

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout probability must be between 0 and 1, got {p}")
        self.p = float(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p) if self.training else x

    def extra_repr(self) -> str:
        return f"p={self.p}"
