"""BitFit: train only the bias terms of the pretrained model (Ben Zaken, Ravfogel & Goldberg 2022, "BitFit: Simple
Parameter-efficient Fine-tuning for Transformer-based Masked Language-models", arXiv:2106.10199).

    h = W x + b            W frozen, b trained: every bias of the model, LayerNorm's β included

    x ─▶ W_q x + b_q ─┐                                                          (b trained, W frozen)
    x ─▶ W_k x + b_k ─┼─▶ attention ─▶ W_o · + b_o ─▶ + ─▶ LayerNorm(γ, β) ─▶ W_1 · + b_1 ─▶ γ ─▶ W_2 · + b_2 ─▶ ...
    x ─▶ W_v x + b_v ─┘                                            ▲ β trained, γ frozen

Trainable parameters (BERT, head not included): L · (7d + d_ff), the biases of each layer (size d: query, key,
value, attention output, FFN output, 2 LayerNorm β; size d_ff: FFN first linear), + d for the embedding
LayerNorm β + d for the pooler, if the model has one. MiniLM: 6 · (7·384 + 1536) + 2 · 384 = 26,112 (0.11 %).

Unlike the adapter methods, BitFit changes the base model's own tensors: there is nothing to switch off
(disable_adapters does not undo it), and save_adapter saves the trained biases (its registry entry says it
trains base tensors, see methods/__init__.py).
Llama-family models (SmolLM2) have no bias at all (bias-free linears, RMSNorm): apply_bitfit refuses them.
"""
from ..core import check_new_adapter, is_adapter_parameter, is_head, mark_trainable, pretrained_model, record_config


def bias_names(model) -> set[str]:
    """Names of the base model's bias parameters (not those of adapters or of the task head)."""
    return {n for n, _ in model.named_parameters() if n.endswith("bias") and not is_adapter_parameter(n)
            and not is_head(n)}


def apply_bitfit(model, name: str = "default"):
    """Make the base model's biases and the task head trainable, everything else frozen. Raises ValueError for
    a model without biases (Llama family) or a name in use; the model is then unchanged."""
    biases = bias_names(model)
    if not biases:
        raise ValueError(f"{type(pretrained_model(model)).__name__} has no bias terms (Llama-family models such as "
                         f"SmolLM2 use bias-free linear layers and RMSNorm), so BitFit would train nothing but a "
                         f"head: use LoRA or (IA)³ instead")
    check_new_adapter(model, name)
    record_config(model, name, "bitfit")
    mark_trainable(model, lambda n, p: n in biases or is_head(n))
    return model


def bitfit_parameter_count(num_layers: int, d: int, d_ff: int, pooler: bool = False) -> int:
    """Closed form for BERT: L · (7d + d_ff) + d (embedding LayerNorm β) + d if there is a pooler."""
    return num_layers * (7 * d + d_ff) + d + (d if pooler else 0)
