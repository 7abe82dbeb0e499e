"""Checks for 04_prompt_tuning."""
import copy

import torch

from minipeft.core import body
from minipeft.lab.course import ExerciseCheck
from minipeft.lab.models import load_encoder, tiny_bert
from minipeft.methods.p_tuning import apply_deep_prompts
from minipeft.methods.probing import Classifier
from minipeft.methods.prompt_tuning import apply_prompt_tuning
from minipeft.params import count_parameters


def _deep_prompt_params():
    model = apply_deep_prompts(Classifier(load_encoder()[0], num_labels=2), k=10)
    return count_parameters(model)["trainable"]


def _lora_qv_params(r=8):
    c = load_encoder()[0].config
    return c.num_hidden_layers * 2 * r * (c.hidden_size + c.hidden_size)  # A: r × d, B: d × r, on query and value


def _prepend_ok(answer):
    """answer(backbone, prompt, input_ids, attention_mask) must give the last hidden states of apply_prompt_tuning."""
    backbone = tiny_bert()
    torch.manual_seed(0)
    input_ids = torch.randint(1000, 2000, (3, 7))
    attention_mask = torch.tensor([[1] * 7, [1] * 5 + [0] * 2, [1] * 6 + [0]])
    prompt = torch.randn(4, backbone.config.hidden_size) * 0.05
    with torch.no_grad():
        mine = answer(backbone, prompt.clone(), input_ids, attention_mask)
        reference = apply_prompt_tuning(copy.deepcopy(backbone), k=4)
        body(reference).prompts.adapters["default"].weight.copy_(prompt)
        expected = reference(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    return mine.shape == expected.shape and torch.allclose(mine, expected, atol=1e-6)


def _wrong_prepend(backbone, prompt, input_ids, attention_mask):  # the prompt at the END of the sequence
    embeds = backbone.get_input_embeddings()(input_ids)
    k, rows = prompt.shape[0], input_ids.shape[0]
    embeds = torch.cat([embeds, prompt.expand(rows, -1, -1)], 1)
    mask = torch.cat([attention_mask, attention_mask.new_ones(rows, k)], 1)
    return backbone(inputs_embeds=embeds, attention_mask=mask).last_hidden_state


CHECKS = {
    "deep_prompt_params": ExerciseCheck(
        lambda a: int(a) == _deep_prompt_params(),
        "deep prompts put fresh prompt vectors in front of every layer, not only the input; and the classifier's "
        "head trains too",
        "each of the L layers gets its own k vectors of size d; add the linear head, which maps d features to 2 "
        "classes with one bias per class"),
    "prepend": ExerciseCheck(
        _prepend_ok,
        "look the token ids up in the embedding table yourself, put the prompt vectors in front of them, and run "
        "the backbone on embeddings instead of ids",
        "the prompt is one k × d tensor for all rows: expand it to the batch and join it before the token "
        "embeddings along the sequence; the attention mask needs k ones in front as well"),
    "k_like_lora": ExerciseCheck(
        lambda a: int(a) == _lora_qv_params() // load_encoder()[0].config.hidden_size,
        "compute LoRA's count first (the statement gives its form), then ask how many vectors of size d fit in it",
        "a soft prompt of length k trains k vectors of d = 384 numbers: the largest whole k whose prompt does not "
        "exceed LoRA's count"),
}
WRONG = {"deep_prompt_params": 6 * 10 * 384, "prepend": _wrong_prepend, "k_like_lora": 96}
