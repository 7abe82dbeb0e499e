"""DoRA: LoRA's update, then every output row of the weight rescaled to a learned length (Liu et al. 2024,
"DoRA: Weight-Decomposed Low-Rank Adaptation", arXiv:2402.09353).

    W' = m ⊙ (W + s·B A) / ‖W + s·B A‖        s = α/r (α/√r with rslora);  ‖·‖ the norm of each output row
    m ∈ R^d_out trained, initialised to ‖W‖: at the start W' = W exactly (B = 0), the model is the base

            x ─────────────┬──────────────────────┐
        ┌───▼───┐      ┌───▼───┐                  │
        │   W   │      │ s·B A │  LoRA's pair     │
        └───┬───┘      └───┬───┘                  │
            └───── + ◀─────┘                      │
                   │  W + s·BA: the DIRECTION      │
             ÷ ‖row‖ · m        m: the MAGNITUDE of each output row, trained
                   ▼
                   h = m/‖W + s·BA‖ ⊙ (W x + s·B A x) + b

Weight decomposition: a fine-tuned weight differs from the pretrained one both in the direction and in the length
of its rows; LoRA couples the two, DoRA lets a vector of d_out numbers learn the lengths. As the paper recommends
(its section 4.3), the norm is treated as a constant in the backward pass, which saves memory and barely changes
the gradient. Computed without building W': h = (g − 1)·W x + g·s·B A x + linear(x), g = m/‖W + s·BA‖.

Trainable parameters: r · (d_in + d_out) + d_out per target. `merge_lora` folds it in (W ← g·(W + s·BA), g kept to
unmerge exactly); a merged DoRA cannot be switched off by subtraction like LoRA, so switching first unmerges.
Hugging Face peft: `LoraConfig(use_dora=True)`; the tests compare outputs with it from the same weights.
"""
import torch
from torch import nn
from torch.nn import functional as F

from ..core import check_positive_int
from .lora import LoRA, insert_lora


class DoRA(LoRA):
    """LoRA's pair (A, B) and a magnitude m per output row, initialised to the rows' norms of W."""
    linear_update = False

    def __init__(self, linear: nn.Linear, r: int, alpha: float, dropout: float, rslora: bool = False):
        super().__init__(linear, r, alpha, dropout, rslora)
        self.magnitude = nn.Parameter(linear.weight.detach().norm(dim=1).clone())
        self.merged_gain = None

    def gain(self, weight: torch.Tensor) -> torch.Tensor:
        """g = m / ‖W + s·BA‖ per output row, the norm held constant in the backward pass."""
        return self.magnitude / (weight + self.delta_weight().detach()).norm(dim=1).detach()

    def forward(self, x, linear):
        g = self.gain(linear.weight)
        return (g - 1) * F.linear(x, linear.weight) + g * super().forward(x)

    def merge_into(self, linear: nn.Linear) -> None:
        """W ← g·(W + s·BA); g is kept so that unmerging restores W."""
        self.merged_gain = self.gain(linear.weight)
        linear.weight.copy_(self.merged_gain[:, None] * (linear.weight + self.delta_weight()))

    def unmerge_from(self, linear: nn.Linear) -> None:
        """W ← W / g − s·BA."""
        linear.weight.copy_(linear.weight / self.merged_gain[:, None] - self.delta_weight())
        self.merged_gain = None


def apply_dora(model, targets=("query", "value"), r: int = 8, alpha: float = 16, dropout: float = 0.0,
               rslora: bool = False, name: str = "default"):
    """Like apply_lora, with DoRA adapters: LoRA's pair plus a trained magnitude per output row. Raises ValueError
    for a rank that is not a positive integer, a target that matches nothing, or a name in use (model unchanged)."""
    check_positive_int(r, "DoRA rank r")
    return insert_lora(model, targets, lambda linear: DoRA(linear, r, alpha, dropout, rslora), name, "dora", r=r,
                       alpha=alpha, dropout=dropout, rslora=rslora)


def dora_parameter_count(shapes, r: int) -> int:
    """Closed form: r · (d_in + d_out) + d_out summed over the targeted (d_in, d_out) shapes."""
    return sum(r * (d_in + d_out) + d_out for d_in, d_out in shapes)
