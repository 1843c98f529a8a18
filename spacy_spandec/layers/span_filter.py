"""Span filter (SF): a token-level entity-vs-O classifier that prunes spans.

Paper section 4.1: a linear classifier on the encoder outputs, trained jointly
with the decoder; at inference every span containing a token whose entity
probability is below the threshold is dropped before the decoder runs.
"""

import torch
from torch import nn


class SpanFilter(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.linear = nn.Linear(width, 1)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Entity logits, one per token: (T, d) -> (T,)."""
        return self.linear(tokens).squeeze(-1)


def spans_to_keep(
    token_logits: torch.Tensor,
    starts: torch.Tensor,
    ends: torch.Tensor,
    threshold: float,
) -> torch.Tensor:
    """Boolean mask of the spans whose every token passes the threshold.

    `starts`/`ends` index the same flat token axis as `token_logits`, `ends`
    inclusive. A cumulative count of failing tokens answers every span in
    O(1), so pruning costs one pass over tokens plus one over spans.
    """
    if threshold <= 0.0:
        return torch.ones_like(starts, dtype=torch.bool)
    failing = (torch.sigmoid(token_logits) < threshold).to(torch.int64)
    cumulative = torch.nn.functional.pad(torch.cumsum(failing, 0), (1, 0))
    return (cumulative[ends + 1] - cumulative[starts]) == 0
