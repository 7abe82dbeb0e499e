"""Checks for 10_lora_successors. Sizes come from MiniLM's config file: no weights are loaded."""
import torch
from transformers import AutoConfig

from minipeft.lab.course import ExerciseCheck
from minipeft.lab.models import encoder_path


def _dora_extra():
    config = AutoConfig.from_pretrained(encoder_path())
    return config.num_hidden_layers * 2 * config.hidden_size  # one length per output row of query and of value


def _initial_magnitude_is_right(initial_magnitude) -> bool:
    torch.manual_seed(0)
    for d_out, d_in in [(3, 5), (7, 2), (384, 384)]:
        W = torch.randn(d_out, d_in) * torch.rand(d_out, 1)  # rows of different lengths
        m = torch.as_tensor(initial_magnitude(W), dtype=W.dtype)
        if m.shape != (d_out,) or not torch.allclose(m, W.norm(dim=1), atol=1e-5):
            return False
    return True


CHECKS = {
    "dora_extra": ExerciseCheck(
        lambda a: int(a) == _dora_extra(),
        "DoRA trains LoRA's pair and something more for every adapted matrix: what is it, and how long is it?",
        "one length per output row of each adapted matrix; query and value each map the hidden size to itself, "
        "in every layer (read the hidden size and the number of layers from the config)"),
    "rslora_factor": ExerciseCheck(
        lambda a: abs(float(a) - 8.0) < 1e-6,
        "write both scales for the same α and rank, and divide one by the other",
        "α cancels; what is left is the rank divided by its square root"),
    "initial_magnitude": ExerciseCheck(
        _initial_magnitude_is_right,
        "the adapted layer must start as the base layer: with B at zero, the gain must be one for every row",
        "the gain divides the magnitude by the length of each output row of W, so start the magnitude at those "
        "lengths: one number per row (a vector of d_out entries), not per column"),
}
WRONG = {"dora_extra": 384, "rslora_factor": 64, "initial_magnitude": lambda W: W.norm(dim=0)}
