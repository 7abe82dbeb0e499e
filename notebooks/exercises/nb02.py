"""Checks for 02_probing."""
import torch

from minipeft.lab.course import ExerciseCheck
from minipeft.lab.models import tiny_bert
from minipeft.methods.probing import Classifier, probe_parameter_count


def _mean_pool_ok(function):
    generator = torch.Generator().manual_seed(2)
    hidden = torch.randn(4, 7, 5, generator=generator)
    mask = torch.tensor([[1] * 7, [1] * 3 + [0] * 4, [1] + [0] * 6, [1] * 5 + [0] * 2])
    reference = Classifier(tiny_bert(), pooling="mean").pool(hidden, mask)
    got = torch.as_tensor(function(hidden, mask))
    return got.shape == reference.shape and torch.allclose(got, reference, atol=1e-6)


CHECKS = {
    "mean_pool": ExerciseCheck(
        _mean_pool_ok, "multiply by mask[..., None], sum over the length, divide by the number of real tokens"),
    "mlp_probe_smollm2": ExerciseCheck(
        lambda a: int(a) == probe_parameter_count(576, 3, "mlp"),
        "first linear d → d (weights and bias), then d → C (weights and bias), with d = 576 and C = 3"),
    "all_layers_probe_params": ExerciseCheck(
        lambda a: int(a) == probe_parameter_count(7 * 384, 2, "linear"),
        "the input now has 7 × 384 dimensions; a linear head has (input size) × C weights + C biases"),
}
WRONG = {"mean_pool": lambda hidden, mask: hidden.mean(1), "mlp_probe_smollm2": 576 * 576 + 576 * 3,
         "all_layers_probe_params": 384 * 2 + 2}
