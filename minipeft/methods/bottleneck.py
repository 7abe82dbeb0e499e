"""Bottleneck adapters: a small MLP with a skip connection after a sublayer (Houlsby et al. 2019, "Parameter-
Efficient Transfer Learning for NLP", arXiv:1902.00751; Pfeiffer et al. 2021, "AdapterFusion", arXiv:2005.00247).

    Adapter(h) = h + g · (W_up σ(W_down h + b_down) + b_up)      W_down: r × d, W_up: d × r, r the bottleneck
    σ = relu (default), gelu or silu;  g = 1 (fusion "add") or g = sigmoid(s) (fusion "gate"): s is one learned
    scalar per adapter module, starting at 0 (g = 1/2), the smallest gate that lets training turn an adapter down

    h ──┬─────────────────────────────────────────────▶ + ──▶ Adapter(h)
        └──▶ [ W_down ] ──▶ σ ──▶ [ W_up ] ──▶ · g ────┘
              d → r                 r → d, zeros: starts exactly as the base (init="zeros")

Where, in each transformer layer (the adapter sits on the sublayer's output, before residual add + LayerNorm):

    x ─▶ attention ─▶ W_o ─▶ (A)ʰ ─▶ + x ─▶ LayerNorm ─▶ W_1 ─▶ γ ─▶ W_2 ─▶ (A)ʰᵖ ─▶ + ─▶ LayerNorm
                                                        ʰ placement "houlsby" only   ʰᵖ "houlsby" and "pfeiffer"

BERT: W_o = `attention.output.dense`, W_2 = `layer.N.output.dense`; Llama: `o_proj`, `down_proj` (pre-norm, so
there the adapter output goes straight into the residual add). Wrapping the linear puts the adapter before
BERT's dropout, which is the identity at evaluation. Trainable parameters, per adapter module 2dr + d + r
(+ 1 gate): Houlsby 2L · (2dr + d + r), Pfeiffer L · (2dr + d + r), plus 2L or L gate scalars.
"""
import torch
from torch import nn

from ..core import (BERT_ATTENTION_OUTPUT, BERT_FFN_OUTPUT, AdapterLayer, check_new_adapter, check_positive_int,
                    find_modules, pretrained_model, record_and_activate, unwrap, wrapped)

PLACEMENTS = {  # model_type -> placement -> linears whose output goes through an adapter
    "bert": {"houlsby": [BERT_ATTENTION_OUTPUT, BERT_FFN_OUTPUT], "pfeiffer": [BERT_FFN_OUTPUT]},
    "llama": {"houlsby": ["o_proj", "down_proj"], "pfeiffer": ["down_proj"]},
}
FUSIONS, INITS = ("add", "gate"), ("zeros", "normal")
ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU}


class Bottleneck(nn.Module):
    """One adapter: d → r → d, returning only the update g · W_up σ(W_down h) (the layer adds h)."""

    def __init__(self, d: int, r: int, activation: str, gated: bool, init_scale: float):
        super().__init__()
        self.down, self.act, self.up = nn.Linear(d, r), ACTIVATIONS[activation](), nn.Linear(r, d)
        if init_scale > 0:
            nn.init.normal_(self.up.weight, std=init_scale)  # near identity
        else:
            nn.init.zeros_(self.up.weight)  # exactly identity
        nn.init.zeros_(self.up.bias)
        self.gate = nn.Parameter(torch.zeros(1)) if gated else None

    def forward(self, h):
        update = self.up(self.act(self.down(h)))
        return update if self.gate is None else torch.sigmoid(self.gate) * update


class BottleneckLayer(AdapterLayer):
    """A frozen linear followed by named bottleneck adapters on its output h: h + adapter(h)."""

    def __init__(self, base: nn.Module):
        super().__init__()
        self.base = base

    def forward(self, x):
        h = self.base(x)
        if isinstance(self.active, list):  # mixed batch: each row gets its own adapter's update
            return h + sum(self.row_mask(name, h) * a(h) for name, a in self.adapters.items() if name in self.active)
        return h + self.adapters[self.active](h) if self.active in self.adapters else h


def check_arguments(r, d, placement, fusion, activation, init, init_scale):
    """Raise ValueError, saying what to choose instead, for any option apply_bottleneck cannot use."""
    check_positive_int(r, "the bottleneck size r")
    if r > d:
        raise ValueError(f"bottleneck larger than the hidden size: r={r} > d={d}. An adapter compresses: "
                         f"pick r < {d}, e.g. d/16 = {max(1, d // 16)}")
    for what, value, allowed in [("placement", placement, ("houlsby", "pfeiffer")), ("fusion", fusion, FUSIONS),
                                 ("activation", activation, list(ACTIVATIONS)), ("init", init, INITS)]:
        if value not in allowed:
            raise ValueError(f"unknown {what} {value!r}; choose one of {list(allowed)}")
    if init_scale is not None and (init != "normal" or not init_scale > 0):
        raise ValueError(f"init_scale={init_scale!r} is the σ > 0 of init='normal' (W_up ~ N(0, σ)); "
                         f"init='zeros' starts W_up at exactly 0")


def placement_targets(model, placement: str) -> list[str]:
    """The linears after which `placement` puts an adapter, for the model's family (config.model_type)."""
    family = pretrained_model(model).config.model_type
    if family not in PLACEMENTS:
        raise ValueError(f"no adapter placements known for model_type {family!r}; known: {sorted(PLACEMENTS)}")
    return PLACEMENTS[family][placement]


def apply_bottleneck(model, r: int = 16, placement: str = "pfeiffer", fusion: str = "add", activation: str = "relu",
                     init: str = "zeros", init_scale: float | None = None, name: str = "default"):
    """Put a bottleneck adapter `name` after each linear of the placement; freeze the rest (head excepted).

    init="zeros": W_up = 0 (the model starts as the base); init="normal": W_up ~ N(0, init_scale or 1e-2).
    Raises ValueError for a bad size or option, an unknown model family, or a name in use (model unchanged)."""
    d = pretrained_model(model).config.hidden_size
    check_arguments(r, d, placement, fusion, activation, init, init_scale)
    found = find_modules(model, placement_targets(model, placement))
    check_new_adapter(model, name)
    sigma = (init_scale or 1e-2) if init == "normal" else 0.0
    for module_name, module in found:
        layer, linear = wrapped(model, module_name, module, BottleneckLayer), unwrap(module)
        adapter = Bottleneck(linear.out_features, r, activation, fusion == "gate", sigma)
        layer.adapters[name] = adapter.to(linear.weight.device, linear.weight.dtype)
    return record_and_activate(model, name, "bottleneck", r=r, placement=placement, fusion=fusion,
                               activation=activation, init=init, init_scale=init_scale)


def bottleneck_parameter_count(num_layers: int, d: int, r: int, placement: str = "pfeiffer",
                               fusion: str = "add") -> int:
    """Closed form: (2dr + d + r [+ 1 gate]) per adapter module; 2 modules per layer (Houlsby) or 1 (Pfeiffer)."""
    per_module = 2 * d * r + d + r + (1 if fusion == "gate" else 0)
    return num_layers * (2 if placement == "houlsby" else 1) * per_module
