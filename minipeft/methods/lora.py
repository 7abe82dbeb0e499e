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

rsLoRA (Kalajdzievski 2023, arXiv:2312.03732): `rslora=True` scales by α/√r instead of α/r, so the update's size
does not shrink as the rank grows. LoRA+ (Hayou et al. 2024, arXiv:2402.12354): B learns λ times faster than A,
`train(..., lr_scale=loraplus(λ))`. DoRA, which rescales each row of W + (α/r)·BA, builds on this file (dora.py).
"""
import math

import torch
from torch import nn

from ..core import (AdapterLayer, check_new_adapter, check_positive_int, find_modules, record_and_activate, unwrap,
                    wrapped)


class LoRA(nn.Module):
    """The trainable pair (A, B) of one adapter; `forward(x, linear)` returns what it adds to linear(x)."""
    linear_update = True  # a merged LoRA can be subtracted from W x again (see LoRALinear.coefficient)

    def __init__(self, linear: nn.Linear, r: int, alpha: float, dropout: float, rslora: bool = False):
        super().__init__()
        self.A = nn.Parameter(torch.empty(r, linear.in_features))
        self.B = nn.Parameter(torch.zeros(linear.out_features, r))
        nn.init.kaiming_uniform_(self.A, a=math.sqrt(5))  # the same init as nn.Linear (and peft)
        self.scaling, self.dropout = alpha / (math.sqrt(r) if rslora else r), nn.Dropout(dropout)

    def forward(self, x, linear=None):
        return ((self.dropout(x) @ self.A.T) * self.scaling) @ self.B.T  # scaled while r wide: fewer products

    def delta_weight(self):
        """(α/r)·B A: what this adapter adds to W."""
        return (self.B @ self.A) * self.scaling

    def merge_into(self, linear: nn.Linear) -> None:
        """W ← W + (α/r)·B A."""
        linear.weight += self.delta_weight()

    def unmerge_from(self, linear: nn.Linear) -> None:
        """W ← W − (α/r)·B A."""
        linear.weight -= self.delta_weight()


class LoRALinear(AdapterLayer):
    """A frozen nn.Linear plus named LoRA adapters. `merged` names the adapter folded into the weight, if any."""

    def __init__(self, base: nn.Linear):
        super().__init__()
        self.base, self.merged = base, None

    @torch.no_grad()
    def remove(self, name: str) -> None:
        """Delete adapter `name`, taking it out of W first if it is the merged one."""
        if self.merged == name:
            self.adapters[name].unmerge_from(self.base)
            self.merged = None
        super().remove(name)

    def coefficient(self, name: str, x: torch.Tensor):
        """How much of adapter `name` to add: 1 if active, 0 if not, a row mask in a mixed batch;
        minus 1 if it is already merged into W (so disabling a merged adapter still gives the base model)."""
        want = self.row_mask(name, x) if isinstance(self.active, list) else float(self.active == name)
        return want - float(self.merged == name)

    def forward(self, x):
        merged = self.adapters[self.merged] if self.merged is not None else None
        if merged is not None and not merged.linear_update and self.active != self.merged:
            raise RuntimeError(f"adapter {self.merged!r} is merged and cannot be subtracted again: "
                               f"unmerge_lora(model) before switching adapters")
        y = self.base(x)
        for name, lora in self.adapters.items():
            c = self.coefficient(name, x)
            if torch.is_tensor(c):
                y = y + c * lora(x, self.base)
            elif c != 0:
                y = torch.add(y, lora(x, self.base), alpha=c)  # y + c·lora(x) in one operation (c is usually 1)
        return y


def insert_lora(model, targets, make, name: str, method: str, **config):
    """Wrap every target nn.Linear in a LoRALinear holding a new adapter `make(linear)` under `name`, then record
    `method` with `config` and activate it. Shared by LoRA and DoRA."""
    found = find_modules(model, targets)
    check_new_adapter(model, name)
    for module_name, module in found:
        layer, linear = wrapped(model, module_name, module, LoRALinear), unwrap(module)
        layer.adapters[name] = make(linear).to(linear.weight.device, linear.weight.dtype)
    return record_and_activate(model, name, method, targets=[targets] if isinstance(targets, str) else list(targets),
                               **config)


def apply_lora(model, targets=("query", "value"), r: int = 8, alpha: float = 16, dropout: float = 0.0,
               rslora: bool = False, name: str = "default"):
    """Wrap every target nn.Linear in a LoRALinear with a new adapter `name`; freeze the rest (head excepted).

    targets: module names (see core.find_modules); alpha: the update is scaled by alpha / r (alpha / √r with
    rslora=True); dropout: on the input of A. Raises ValueError for a rank that is not a positive integer, a target
    that matches nothing, or a name in use; the model is then unchanged."""
    check_positive_int(r, "LoRA rank r")
    return insert_lora(model, targets, lambda linear: LoRA(linear, r, alpha, dropout, rslora), name, "lora", r=r,
                       alpha=alpha, dropout=dropout, rslora=rslora)


def lora_layers(model) -> list[LoRALinear]:
    """Every LoRALinear inside `model`."""
    return [m for m in model.modules() if isinstance(m, LoRALinear)]


@torch.no_grad()
def merge_lora(model, name: str = "default"):
    """Fold adapter `name` into each wrapped weight (LoRA: W ← W + (α/r)·B A); a layer merges one adapter at most."""
    packed = [layer for layer in lora_layers(model) if not getattr(layer.base, "mergeable", True)]
    if packed:  # a quantized base (qlora.py): W + (α/r)·B A would have to be quantized again
        raise TypeError(f"{type(packed[0].base).__name__} is quantized: merging would need it quantized again; "
                        "run the adapter unmerged (the model is unchanged)")
    for layer in lora_layers(model):
        if name in layer.adapters and layer.merged is None:
            layer.adapters[name].merge_into(layer.base)
            layer.merged = name
    return model


@torch.no_grad()
def unmerge_lora(model):
    """Take the merged adapter out of each weight again (LoRA: W ← W − (α/r)·B A)."""
    for layer in lora_layers(model):
        if layer.merged is not None:
            layer.adapters[layer.merged].unmerge_from(layer.base)
            layer.merged = None
    return model


def loraplus(ratio: float):
    """LoRA+'s learning rates for train(..., lr_scale=...): B's rate is `ratio` × A's (and the head's)."""
    return lambda name: ratio if name.endswith(".B") else 1.0


def lora_parameter_count(shapes, r: int) -> int:
    """Closed form: r · (d_in + d_out) summed over the targeted (d_in, d_out) shapes."""
    return sum(r * (d_in + d_out) for d_in, d_out in shapes)
