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
        _mean_pool_ok,
        "padding positions must count neither in the sum nor in the number you divide by",
        "zero the padding out by multiplying the hidden states by the mask (give the mask a trailing dimension of "
        "size 1 so that it broadcasts over d), sum over the length, and divide by each row's number of real tokens"),
    "mlp_probe_smollm2": ExerciseCheck(
        lambda a: int(a) == probe_parameter_count(576, 3, "mlp"),
        "the MLP head has two linear layers, and every linear layer has a weight matrix and a bias vector",
        "the first layer keeps the width d, the second maps d to the 3 classes: count the weights and the biases "
        "of both and add them up"),
    "all_layers_probe_params": ExerciseCheck(
        lambda a: int(a) == probe_parameter_count(7 * 384, 2, "linear"),
        "the probe is still one linear layer: only its input got wider",
        "its input is the 7 layers' features side by side; a linear layer has one weight per (input feature, class) "
        "pair and one bias per class"),
}
WRONG = {"mean_pool": lambda hidden, mask: hidden.mean(1), "mlp_probe_smollm2": 576 * 576 + 576 * 3,
         "all_layers_probe_params": 384 * 2 + 2}
