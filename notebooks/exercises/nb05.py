"""Checks for 05_prefix_tuning."""
import json

import torch

from minipeft.lab.course import ExerciseCheck
from minipeft.lab.models import causal_lm_cache
from minipeft.methods.prefix_tuning import prefix_tuning_parameter_count


def _smollm_sizes():
    """(layers, d, d_kv) of SmolLM2, read from its config file (no model is loaded)."""
    c = json.loads((causal_lm_cache() / "config.json").read_text())
    head_dim = c.get("head_dim") or c["hidden_size"] // c["num_attention_heads"]
    return c["num_hidden_layers"], c["hidden_size"], c["num_key_value_heads"] * head_dim


def _expand_kv_ok(expand_kv) -> bool:
    torch.manual_seed(0)
    for kv_heads, groups in [(3, 3), (2, 4), (4, 1)]:
        x = torch.randn(2, kv_heads, 5, 4)
        out = expand_kv(x, groups)
        if out.shape != (2, kv_heads * groups, 5, 4):
            return False
        if not all(torch.equal(out[:, q], x[:, q // groups]) for q in range(kv_heads * groups)):
            return False
    return True


def _fold_counts():
    layers, d, d_kv = _smollm_sizes()
    return (prefix_tuning_parameter_count(16, layers, d_kv, d, 256), prefix_tuning_parameter_count(16, layers, d_kv))


def _server_mib():
    layers, _, d_kv = _smollm_sizes()
    return 1000 * 2 * layers * 10 * d_kv * 4 / 2 ** 20


CHECKS = {
    "expand_kv": ExerciseCheck(
        _expand_kv_ok,
        "query head q must read KV head q // groups: each KV head has to appear `groups` times in a row, rather "
        "than the whole set of heads being repeated",
        "compare the two ways of copying along dimension 1 for 3 heads and 2 groups: tiling the heads gives the "
        "order 0, 1, 2, 0, 1, 2, repeating each head in place gives 0, 0, 1, 1, 2, 2; only the second pairs every "
        "query head with its KV head"),
    "fold_counts": ExerciseCheck(
        lambda a: tuple(int(x) for x in a) == _fold_counts(),
        "while training, the parameters are the small prefix table plus the MLP that turns it into keys and "
        "values; after folding, only the keys and values themselves are left",
        "the MLP has two linear layers with biases: d to the hidden size, then the hidden size to the keys and "
        "values of all L layers. Folded, every layer keeps k keys and k values of width d_kv, which is narrower "
        "than d with grouped heads (3 KV heads of 64)"),
    "server_mib": ExerciseCheck(
        lambda a: abs(float(a) - _server_mib()) <= 0.01 * _server_mib(),
        "count the numbers one user's prefix keeps (keys and values, in every layer), then the bytes, then all "
        "users, then MiB",
        "every layer keeps k keys and k values of width d_kv (3 KV heads of 64 dimensions, not d = 576); a "
        "float32 takes 4 bytes, and a MiB is 2 to the power 20 bytes"),
}
WRONG = {
    "expand_kv": lambda x, groups: x.repeat(1, groups, 1, 1),  # right shape, heads paired the wrong way
    "fold_counts": (2 * 30 * 16 * 576, 2 * 30 * 16 * 576),  # ignores the MLP and the grouped KV heads
    "server_mib": 1000 * 2 * 30 * 10 * 576 * 4 / 2 ** 20,  # as if all 9 heads had their own keys and values
}
