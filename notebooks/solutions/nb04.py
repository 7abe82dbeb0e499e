"""Solutions for 04_prompt_tuning's exercises."""
import torch

from minipeft.lab.models import load_encoder

_c = load_encoder()[0].config
_d, _L = _c.hidden_size, _c.num_hidden_layers


def prepend(backbone, prompt, input_ids, attention_mask):
    """The last hidden states of `backbone` with the k × d `prompt` written in front of every row."""
    k, rows = prompt.shape[0], input_ids.shape[0]
    embeds = torch.cat([prompt.expand(rows, -1, -1), backbone.get_input_embeddings()(input_ids)], 1)
    mask = torch.cat([attention_mask.new_ones(rows, k), attention_mask], 1)
    return backbone(inputs_embeds=embeds, attention_mask=mask).last_hidden_state


ANSWERS = {
    "deep_prompt_params": _L * 10 * _d + (_d * 2 + 2),  # L·k·d prompts + the linear head
    "prepend": prepend,
    # 73,728 LoRA parameters = 192 × 384. At that size prompt tuning is the more expensive one to train: 192
    # virtual tokens make every 48-token input about 5 times longer, in every layer, forward and backward,
    # while LoRA adds two thin matrix products to 12 projections and leaves the sequence as it is.
    "k_like_lora": _L * 2 * 8 * (_d + _d) // _d,
}
