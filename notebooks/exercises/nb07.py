"""Checks for 07_lora_bitfit_ia3. Shapes come from the models' config files: no weights are loaded."""
import torch
from transformers import AutoConfig

from minipeft.lab.course import ExerciseCheck
from minipeft.lab.models import causal_lm_cache, encoder_path
from minipeft.methods.lora import LoRA

MINILM_PARAMS = 22_713_216  # all-MiniLM-L6-v2's parameter count (asserted in 00_setup)


def _shapes(config):
    """(L, d, d_kv, d_ff) of a model: d_kv is the width of the keys and values (grouped heads: narrower than d)."""
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    return config.num_hidden_layers, config.hidden_size, kv_heads * head_dim, config.intermediate_size


def _lora_all_attention_smollm2():
    layers, d, d_kv, _ = _shapes(AutoConfig.from_pretrained(causal_lm_cache()))
    per_layer = [(d, d), (d, d_kv), (d, d_kv), (d, d)]  # q, k, v, o as (d_in, d_out)
    return layers * sum(16 * (d_in + d_out) for d_in, d_out in per_layer)


def _rank_below_0_1_percent():
    layers, d, _, _ = _shapes(AutoConfig.from_pretrained(encoder_path()))
    per_rank = layers * 2 * (d + d)  # query and value, each d -> d
    return max(r for r in range(1, 1000) if r * per_rank < 0.001 * MINILM_PARAMS)


def _ia3_smollm2():
    layers, _, d_kv, d_ff = _shapes(AutoConfig.from_pretrained(causal_lm_cache()))
    return layers * (2 * d_kv + d_ff)


def _merge_is_right(merge) -> bool:
    """The learner's merge(W, A, B, alpha, r) against W + LoRA.delta_weight() on non-square shapes."""
    torch.manual_seed(0)
    for d_in, d_out, r, alpha in [(7, 5, 3, 6.0), (16, 24, 4, 16.0)]:
        lora = LoRA(torch.nn.Linear(d_in, d_out), r, alpha, dropout=0.0)
        with torch.no_grad():
            lora.B.normal_()  # a trained B is not zero
        W = torch.randn(d_out, d_in)
        merged = merge(W.clone(), lora.A.detach().clone(), lora.B.detach().clone(), alpha, r)
        if not torch.allclose(merged, W + lora.delta_weight().detach(), atol=1e-6):
            return False
    return True


CHECKS = {
    "lora_all_attention_smollm2": ExerciseCheck(
        lambda a: int(a) == _lora_all_attention_smollm2(),
        "for each of the four projections LoRA trains r numbers per input dimension and r per output dimension; "
        "add the four, then count all layers",
        "q_proj and o_proj map 576 to 576, but with 3 key/value heads of 64 dimensions k_proj and v_proj map 576 "
        "to 192"),
    "rank_below_0_1_percent": ExerciseCheck(
        lambda a: int(a) == _rank_below_0_1_percent(),
        "work out what one unit of rank costs over the whole model (query and value in every layer), then compare "
        "with 0.1 % of MiniLM",
        "each adapted 384 to 384 matrix costs 768 numbers per unit of rank, there are 2 of them in each of the 6 "
        "layers, and the total must stay strictly below a thousandth of 22,713,216"),
    "ia3_smollm2": ExerciseCheck(
        lambda a: int(a) == _ia3_smollm2(),
        "(IA)³ trains one vector per scaled activation: the keys, the values and the feed-forward's inner "
        "activation, in every layer",
        "SmolLM2's keys and values are d_kv wide: 3 KV heads of 64 dimensions, not the hidden size 576; the "
        "feed-forward vector has d_ff entries (read both from the config)"),
    "merge": ExerciseCheck(
        _merge_is_right,
        "the merged weight is the frozen W plus LoRA's update written as one matrix, with the scale LoRA applies",
        "check the shapes: W is d_out × d_in, so the update must be too, which fixes the order of the product; "
        "and do not forget LoRA's scale, the one that is not trained"),
}
WRONG = {
    "lora_all_attention_smollm2": 30 * 16 * 4 * (576 + 576),  # as if k and v were 576 wide
    "rank_below_0_1_percent": 29,  # forgot the 6 layers × 2 targets
    "ia3_smollm2": 30 * (2 * 576 + 1536),  # used d for the keys and values
    "merge": lambda W, A, B, alpha, r: W + B @ A,  # forgot the scale α / r
}
