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
    "bottleneck": ExerciseCheck(_bottleneck_ok, "h + (W_up @ relu(W_down @ h + b_down)) + b_up; with h as rows: "
                                                "h + relu(h @ W_down.T + b_down) @ W_up.T + b_up"),
    "smollm_houlsby_gate": ExerciseCheck(lambda a: int(a) == bottleneck_parameter_count(30, 576, 16, "houlsby", "gate"),
                                         "2 adapters per layer × 30 layers × (2dr + d + r + 1 gate)"),
    "pfeiffer_r_like_lora": ExerciseCheck(lambda a: int(a) == _largest_r(),
                                          "solve 6 · (2·384·r + 384 + r) ≤ 73,728 for the largest whole r"),
}
WRONG = {
    "bottleneck": lambda h, W_down, b_down, W_up, b_up: torch.relu(h @ W_down.T + b_down) @ W_up.T + b_up,  # no skip
    "smollm_houlsby_gate": 2 * 30 * (2 * 576 * 16 + 576 + 16),  # forgets the gate scalars
    "pfeiffer_r_like_lora": 16,  # the LoRA rank × 2: over the budget
}
