"""Checks for 06_adapter_tuning."""
import torch

from minipeft.lab.course import ExerciseCheck
from minipeft.methods.bottleneck import Bottleneck, bottleneck_parameter_count


def _bottleneck_ok(bottleneck) -> bool:
    """The learner's function against minipeft's adapter module (which returns only the update) plus h."""
    torch.manual_seed(0)
    d, r = 12, 3
    module = Bottleneck(d, r, "relu", gated=False, init_scale=0.5)
    with torch.no_grad():
        module.up.bias.normal_()  # a non-zero b_up, so that forgetting it shows
        for h in [torch.randn(4, d), torch.randn(2, 5, d)]:
            expected = h + module(h)
            got = bottleneck(h, module.down.weight, module.down.bias, module.up.weight, module.up.bias)
            if got.shape != expected.shape or not torch.allclose(got, expected, atol=1e-6):
                return False
    return True


def _largest_r(budget=6 * 2 * 8 * (384 + 384)):
    return max(r for r in range(1, 385) if bottleneck_parameter_count(6, 384, r, "pfeiffer") <= budget)


CHECKS = {
    "bottleneck": ExerciseCheck(
        _bottleneck_ok,
        "an adapter adds its output to its input: mind the skip connection, and where each bias goes",
        "h holds the features in its last dimension, so a weight of shape (out, in) is applied by multiplying with "
        "its transpose; the ReLU sits between the two projections, b_up comes after the up-projection, and the "
        "skip connection adds h to all of it"),
    "smollm_houlsby_gate": ExerciseCheck(
        lambda a: int(a) == bottleneck_parameter_count(30, 576, 16, "houlsby", "gate"),
        "count one adapter module first, then how many modules Houlsby puts in a layer, then all layers",
        "one module has a down-projection (d to r, with a bias), an up-projection (r to d, with a bias) and, with "
        "the gate, one more scalar; Houlsby places two modules in each of the 30 layers"),
    "pfeiffer_r_like_lora": ExerciseCheck(
        lambda a: int(a) == _largest_r(),
        "write the Pfeiffer count as a function of r (one adapter in each of the 6 layers), then find the largest "
        "whole r whose count stays within 73,728",
        "the count grows linearly with r: a fixed part per adapter (the up-projection's bias) and a part "
        "proportional to r (both weight matrices and the down-projection's bias); solve for r and round down"),
}
WRONG = {
    "bottleneck": lambda h, W_down, b_down, W_up, b_up: torch.relu(h @ W_down.T + b_down) @ W_up.T + b_up,  # no skip
    "smollm_houlsby_gate": 2 * 30 * (2 * 576 * 16 + 576 + 16),  # forgets the gate scalars
    "pfeiffer_r_like_lora": 16,  # the LoRA rank × 2: over the budget
}
