"""LoRA: a low-rank update beside a frozen weight matrix (Hu et al. 2021, arXiv:2106.09685).

    h = W x + (α / r) · B A x          W: d_out × d_in frozen;  A: r × d_in,  B: d_out × r trained

            x ──────────────┐
            │               │  dropout
        ┌───▼───┐       ┌───▼───┐
        │   W   │       │   A   │  r × d_in, Kaiming-uniform
        │frozen │       └───┬───┘
        └───┬───┘       ┌───▼───┐
            │           │   B   │  d_out × r, zeros: the model starts exactly as the base
            │           └───┬───┘
            └──── + ◀── α/r ┘
                  h

Where: any nn.Linear named in `targets`, e.g. `query`, `value` in MiniLM's attention, `q_proj`, `v_proj` in
SmolLM2's. Trainable parameters: r · (d_in + d_out) per target. After training, `merge_lora` folds
(α/r)·BA into W, so inference costs exactly what the base model costs; `unmerge_lora` takes it out again.
"""
import math

import torch
from torch import nn

from ..core import (AdapterLayer, check_new_adapter, check_positive_int, find_modules, record_and_activate, unwrap,
                    wrapped)


class LoRA(nn.Module):
    """The trainable pair (A, B) of one adapter."""

    def __init__(self, d_in: int, d_out: int, r: int, alpha: float, dropout: float):
        super().__init__()
        self.A = nn.Parameter(torch.empty(r, d_in))
        self.B = nn.Parameter(torch.zeros(d_out, r))
        nn.init.kaiming_uniform_(self.A, a=math.sqrt(5))  # the same init as nn.Linear (and peft)
        self.scaling, self.dropout = alpha / r, nn.Dropout(dropout)

    def forward(self, x):
        return ((self.dropout(x) @ self.A.T) * self.scaling) @ self.B.T  # scaled while r wide: fewer products

    def delta_weight(self):
        """(α/r)·B A: what this adapter adds to W."""
        return (self.B @ self.A) * self.scaling


class LoRALinear(AdapterLayer):
    """A frozen nn.Linear plus named LoRA adapters. `merged` names the adapter folded into the weight, if any."""

    def __init__(self, base: nn.Linear):
        super().__init__()
        self.base, self.merged = base, None

    @torch.no_grad()
    def remove(self, name: str) -> None:
        """Delete adapter `name`, taking it out of W first if it is the merged one."""
        if self.merged == name:
            self.base.weight -= self.adapters[name].delta_weight()
            self.merged = None
        super().remove(name)

    def coefficient(self, name: str, x: torch.Tensor):
        """How much of adapter `name` to add: 1 if active, 0 if not, a row mask in a mixed batch;
        minus 1 if it is already merged into W (so disabling a merged adapter still gives the base model)."""
        want = self.row_mask(name, x) if isinstance(self.active, list) else float(self.active == name)
        return want - float(self.merged == name)

    def forward(self, x):
        y = self.base(x)
        for name, lora in self.adapters.items():
            c = self.coefficient(name, x)
            if torch.is_tensor(c):
                y = y + c * lora(x)
            elif c != 0:
                y = torch.add(y, lora(x), alpha=c)  # y + c·lora(x) in one operation (c is usually 1)
        return y


def apply_lora(model, targets=("query", "value"), r: int = 8, alpha: float = 16, dropout: float = 0.0,
               name: str = "default"):
    """Wrap every target nn.Linear in a LoRALinear with a new adapter `name`; freeze the rest (head excepted).

    targets: module names (see core.find_modules); alpha: the update is scaled by alpha / r; dropout: on the
    input of A. Raises ValueError for a rank that is not a positive integer, a target that matches nothing, or a
    name in use; the model is then unchanged."""
    check_positive_int(r, "LoRA rank r")
    found = find_modules(model, targets)
    check_new_adapter(model, name)
    for module_name, module in found:
        layer, linear = wrapped(model, module_name, module, LoRALinear), unwrap(module)
        layer.adapters[name] = LoRA(linear.in_features, linear.out_features, r, alpha, dropout).to(
            linear.weight.device, linear.weight.dtype)
    return record_and_activate(model, name, "lora", targets=[targets] if isinstance(targets, str) else list(targets),
                               r=r, alpha=alpha, dropout=dropout)


def lora_layers(model) -> list[LoRALinear]:
    """Every LoRALinear inside `model`."""
    return [m for m in model.modules() if isinstance(m, LoRALinear)]


@torch.no_grad()
def merge_lora(model, name: str = "default"):
    """Fold (α/r)·B A of adapter `name` into each wrapped weight: W ← W + (α/r)·B A."""
    for layer in lora_layers(model):
        if name in layer.adapters and layer.merged is None:
            layer.base.weight += layer.adapters[name].delta_weight()
            layer.merged = name
    return model


@torch.no_grad()
def unmerge_lora(model):
    """Take the merged update out again: W ← W − (α/r)·B A."""
    for layer in lora_layers(model):
        if layer.merged is not None:
            layer.base.weight -= layer.adapters[layer.merged].delta_weight()
            layer.merged = None
    return model


def lora_parameter_count(shapes, r: int) -> int:
    """Closed form: r · (d_in + d_out) summed over the targeted (d_in, d_out) shapes."""
    return sum(r * (d_in + d_out) for d_in, d_out in shapes)
