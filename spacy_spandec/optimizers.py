"""The paper's optimizer recipe, expressed as registered spaCy functions.

AdamW (decoupled weight decay 0.01), gradient clipping 1.0, a 3% warm-up
then linear decay, and a higher learning rate (x10) for newly initialised
weights. Thinc optimizers have one global rate; the per-parameter factor is
applied through Thinc's own `lr_scale` hook, keyed on parameter names.
"""

from fnmatch import fnmatchcase
from typing import Iterable, List, Sequence, Tuple

from spacy.util import registry
from thinc.api import Optimizer
from thinc.schedules import warmup_linear
from thinc.types import FloatsXd

from .layers.decoder import PARAMETER_PREFIX


class ScaledLearnRateOptimizer(Optimizer):
    """Adam(W) whose rate is multiplied by `factor` for matching parameters."""

    def __init__(self, *args, factor: float, patterns: Sequence[str], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.factor = factor
        self.patterns = tuple(patterns)
        self._is_new: dict = {}

    def __call__(
        self,
        key: Tuple[int, str],
        weights: FloatsXd,
        gradient: FloatsXd,
        *,
        lr_scale: float = 1.0,
    ):
        name = key[1]
        if name not in self._is_new:
            self._is_new[name] = any(fnmatchcase(name, p) for p in self.patterns)
        if self._is_new[name]:
            lr_scale *= self.factor
        return super().__call__(key, weights, gradient, lr_scale=lr_scale)


@registry.optimizers("spacy-spandec.AdamW.v1")
def adamw_with_new_weight_factor(
    learn_rate: float = 5e-5,
    *,
    weight_decay: float = 0.01,
    beta1: float = 0.9,
    beta2: float = 0.999,
    eps: float = 1e-8,
    grad_clip: float = 1.0,
    new_weights_lr_factor: float = 10.0,
    new_weights: List[str] = [f"{PARAMETER_PREFIX}.*", "W", "b"],
    use_averages: bool = False,
) -> Optimizer:
    """AdamW; parameters whose name matches `new_weights` learn faster.

    `spandec.*` are the decoder and span filter (their PyTorch names start
    with layers.decoder.PARAMETER_PREFIX); `W`/`b` are Thinc-native
    layers such as a token-classification head. Pretrained transformer
    weights (named like `encoder.layer.0...`) keep the base rate.
    """
    if new_weights_lr_factor <= 0:
        raise ValueError(f"new_weights_lr_factor must be positive, got {new_weights_lr_factor}.")
    return ScaledLearnRateOptimizer(
        learn_rate,
        L2=weight_decay,
        L2_is_weight_decay=True,
        beta1=beta1,
        beta2=beta2,
        eps=eps,
        grad_clip=grad_clip,
        use_averages=use_averages,
        factor=new_weights_lr_factor,
        patterns=new_weights,
    )


@registry.schedules("spacy-spandec.warmup_linear_ratio.v1")
def warmup_linear_ratio(
    initial_rate: float, total_steps: int, warmup_ratio: float = 0.03
) -> Iterable[float]:
    """Linear warm-up over a fraction of the steps, then linear decay to 0."""
    if not 0.0 <= warmup_ratio < 1.0:
        raise ValueError(f"warmup_ratio must be in [0, 1), got {warmup_ratio}.")
    return warmup_linear(initial_rate, int(total_steps * warmup_ratio), total_steps)
