"""(IA)³: learned vectors that rescale activations (Liu et al. 2022, "Few-Shot Parameter-Efficient Fine-Tuning is
Better and Cheaper than In-Context Learning", arXiv:2205.05638).

    K = l_k ⊙ (W_k x)      V = l_v ⊙ (W_v x)      FFN(x) = W_2 (l_ff ⊙ γ(W_1 x))
    l_k, l_v ∈ R^d_kv and l_ff ∈ R^d_ff trained, all initialised to ones: the model starts exactly as the base

    attention                                    feed-forward
        x ─▶ [ W_k ] ─▶ ⊙ l_k ─▶ K                   x ─▶ [ W_1 ] ─▶ γ ─▶ ⊙ l_ff ─▶ [ W_2 ] ─▶ h
        x ─▶ [ W_v ] ─▶ ⊙ l_v ─▶ V                   (l_ff scales the *input* of the second linear)
        x ─▶ [ W_q ] ─────────▶ Q

Where: the OUTPUT of the linears in `targets` (BERT `key`, `value`; Llama `k_proj`, `v_proj`), bias included,
and the INPUT of the linears in `feedforward` (BERT `encoder.layer.N.output.dense`, the FFN's down projection,
not `attention.output.dense`; Llama `down_proj`, whose input is silu(gate_proj x) ⊙ up_proj x).
Trainable parameters: L · (2·d_kv + d_ff), d_kv the key/value width: d for BERT, n_kv_heads · head_dim for
Llama with grouped key-value heads (SmolLM2: 3 · 64 = 192). A vector can be folded into the weight after
training (W_k ← diag(l_k) W_k), which this file leaves out.
"""
import torch
from torch import nn

from ..core import (BERT_FFN_OUTPUT, AdapterLayer, check_new_adapter, find_modules, pretrained_model,
                    record_and_activate, unwrap, wrapped)

# model_type -> (targets whose output is scaled, feed-forward targets whose input is scaled)
DEFAULT_TARGETS = {
    "bert": (["key", "value"], [BERT_FFN_OUTPUT]),
    "llama": (["k_proj", "v_proj"], ["down_proj"]),
}


class IA3(nn.Module):
    """The learned vector (l_k, l_v or l_ff) of one adapter, and whether it scales its linear's input or output."""

    def __init__(self, size: int, scales_input: bool):
        super().__init__()
        self.vector = nn.Parameter(torch.ones(size))
        self.scales_input = scales_input


class IA3Linear(AdapterLayer):
    """A frozen nn.Linear whose input and/or output is multiplied by the active adapter's vector."""

    def __init__(self, base: nn.Module):
        super().__init__()
        self.base = base

    def factor(self, like: torch.Tensor, scales_input: bool):
        """What to multiply this side by: the active adapter's vector, one vector per row in a mixed batch
        (ones for rows whose adapter does not scale this side), or None: leave this side alone."""
        vectors = {name: a.vector for name, a in self.adapters.items() if a.scales_input == scales_input}
        if not isinstance(self.active, list):
            return vectors.get(self.active)
        factor = torch.ones((), dtype=like.dtype, device=like.device)
        for name, vector in vectors.items():
            factor = torch.where(self.row_mask(name, like).bool(), vector, factor)
        return factor

    def forward(self, x):
        on_input = self.factor(x, scales_input=True)
        y = self.base(x if on_input is None else x * on_input)
        on_output = self.factor(y, scales_input=False)
        return y if on_output is None else y * on_output


def as_list(targets) -> list:
    """A target name as a one-element list; a list as it is."""
    return [targets] if isinstance(targets, str) else list(targets)


def resolve_targets(model, targets, feedforward) -> tuple[list, list]:
    """The user's targets, or the defaults of the model's family (config.model_type) for those left None."""
    if targets is None or feedforward is None:
        family = pretrained_model(model).config.model_type
        if family not in DEFAULT_TARGETS:
            raise ValueError(f"no default (IA)³ targets for model_type {family!r} (known: {sorted(DEFAULT_TARGETS)}):"
                             f" pass targets=[key and value projections] and feedforward=[FFN down projections]")
        default_targets, default_feedforward = DEFAULT_TARGETS[family]
        targets = default_targets if targets is None else targets
        feedforward = default_feedforward if feedforward is None else feedforward
    targets, feedforward = as_list(targets), as_list(feedforward)
    if not targets and not feedforward:
        raise ValueError("targets and feedforward are both empty: (IA)³ would scale nothing")
    return targets, feedforward


def apply_ia3(model, targets=None, feedforward=None, name: str = "default"):
    """Give every target linear a new vector of ones under adapter `name` (`targets`: scales the output;
    `feedforward`: scales the input); None = the defaults of the model family. Freezes the rest (head excepted).
    Raises ValueError for targets that match nothing or a module matched by both lists (model unchanged)."""
    targets, feedforward = resolve_targets(model, targets, feedforward)
    found = [(n, m, False) for n, m in (find_modules(model, targets) if targets else [])]
    found += [(n, m, True) for n, m in (find_modules(model, feedforward) if feedforward else [])]
    both = {n for n, _, s in found if s} & {n for n, _, s in found if not s}
    if both:
        raise ValueError(f"{sorted(both)} match both targets and feedforward: a module's output is scaled "
                         f"(keys, values) or its input (the FFN down projection), not both")
    check_new_adapter(model, name)
    for module_name, module, scales_input in found:
        layer, linear = wrapped(model, module_name, module, IA3Linear), unwrap(module)
        size = linear.in_features if scales_input else linear.out_features
        layer.adapters[name] = IA3(size, scales_input).to(linear.weight.device, linear.weight.dtype)
    return record_and_activate(model, name, "ia3", targets=targets, feedforward=feedforward)


def ia3_parameter_count(num_layers: int, d_kv: int, d_ff: int) -> int:
    """Closed form for the default targets: L · (2·d_kv + d_ff)."""
    return num_layers * (2 * d_kv + d_ff)
