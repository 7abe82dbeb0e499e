"""Solutions for 10_lora_successors."""
import math

from transformers import AutoConfig

from minipeft.lab.models import encoder_path

config = AutoConfig.from_pretrained(encoder_path())
dora_extra = config.num_hidden_layers * 2 * config.hidden_size  # 6 layers × (query + value) × 384 rows
alpha, r = 16, 64
rslora_factor = (alpha / math.sqrt(r)) / (alpha / r)


def initial_magnitude(W):
    """The length of every output row of W: then m / ‖W‖ = 1 and DoRA starts as the base layer."""
    return W.norm(dim=1)


ANSWERS = {"dora_extra": dora_extra, "rslora_factor": rslora_factor, "initial_magnitude": initial_magnitude}
