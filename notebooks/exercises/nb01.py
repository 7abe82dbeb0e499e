"""Checks for 01_adaptation_objective."""
import functools
import math

import torch
from torch.nn import functional as F
from transformers import AutoConfig

from minipeft.lab.course import ExerciseCheck
from minipeft.lab.models import causal_lm_cache, causal_lm_tokenizer, tiny_llama


def _lora_smollm2_params():
    c = AutoConfig.from_pretrained(causal_lm_cache())
    d, d_kv = c.hidden_size, c.num_key_value_heads * c.head_dim
    return c.num_hidden_layers * 8 * ((d + d) + (d + d_kv))  # r·(d_in + d_out) for q_proj and v_proj


def _smoothed_ok(function):
    generator = torch.Generator().manual_seed(1)
    for classes, eps in [(2, 0.1), (5, 0.3), (3, 0.0)]:
        logits = torch.randn(16, classes, generator=generator) * 3
        targets = torch.randint(0, classes, (16,), generator=generator)
        got = torch.as_tensor(function(logits, targets, eps))
        if not torch.allclose(got, F.cross_entropy(logits, targets, label_smoothing=eps), atol=1e-5):
            return False
    return True


@functools.lru_cache(maxsize=1)
def _tiny_llama_and_tokenizer():
    return tiny_llama(), causal_lm_tokenizer()  # only read by the check (no_grad), never changed


def _left_padded_ok(function):
    model, tokenizer = _tiny_llama_and_tokenizer()
    prompts = ["Hi", "The film was a long, slow and rather pointless affair, and it", "Fine. It was"]
    token_ids = [9805, 787, 1109]
    with torch.no_grad():
        tokenizer.padding_side = "right"  # the default, whatever an earlier answer set
        got = torch.as_tensor(function(model, tokenizer, prompts, token_ids))
        one_by_one = torch.stack([model(**tokenizer(p, return_tensors="pt")).logits[0, -1].log_softmax(-1)[token_ids]
                                  for p in prompts])
    return got.shape == one_by_one.shape and torch.allclose(got, one_by_one, atol=1e-4)


def _naive_right_padded(model, tokenizer, prompts, token_ids):
    """A plausible wrong answer: right padding and position -1."""
    batch = tokenizer(prompts, return_tensors="pt", padding=True)
    return model(**batch).logits[:, -1].log_softmax(-1)[:, token_ids]


CHECKS = {
    "lora_smollm2_params": ExerciseCheck(
        lambda a: int(a) == _lora_smollm2_params(),
        "count the numbers in A and B for one adapted matrix, then for both matrices of one layer, then for all "
        "layers",
        "with grouped heads v_proj is narrower than q_proj: its output has as many dimensions as the key/value "
        "heads together (3 heads of 64), so the two matrices of a layer do not train the same number of parameters"),
    "smoothed_cross_entropy": ExerciseCheck(
        _smoothed_ok,
        "build the smoothed target distribution q of every row first, then take the cross-entropy between q and "
        "the model's log-probabilities",
        "q gives the right class 1 − eps and shares eps equally among ALL C classes, the right one included, so "
        "that every row of q sums to 1; the loss is the usual cross-entropy, with q in place of the one-hot target, "
        "averaged over the batch"),
    "best_margin": ExerciseCheck(
        lambda a: abs(float(a) - math.log(0.9 / 0.1)) < 1e-3,
        "the smoothed loss is smallest where the model's probability of the right class equals the target's q_y; "
        "with two classes that probability is the sigmoid of the margin",
        "work out q_y for two classes and eps of 0.2 first (smoothing gives the right class its share of eps too), "
        "then invert the sigmoid: the margin is the logarithm of the odds"),
    "left_padded_scores": ExerciseCheck(
        _left_padded_ok,
        "with left padding every row's last real token sits at the last position, but its real tokens no longer "
        "start at position 0: give the model position ids that do",
        "position ids should count real tokens only: 0 at each row's first real token, then 1, 2 and so on; a "
        "running count along the attention mask gives that (negative values on the padding can be set to 0). Then "
        "read the logits of the last position and take log-probabilities of the token ids"),
}
WRONG = {"lora_smollm2_params": 30 * 8 * 4 * 576, "smoothed_cross_entropy":
         lambda z, y, eps: -(((1 - eps) * F.one_hot(y, z.shape[-1]) + eps / (z.shape[-1] - 1)
                              * (1 - F.one_hot(y, z.shape[-1]))) * z.log_softmax(-1)).sum(-1).mean(),
         "best_margin": math.log(0.8 / 0.2), "left_padded_scores": _naive_right_padded}
