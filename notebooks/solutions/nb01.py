"""Solutions for 01_adaptation_objective's exercises."""
import math

import torch


def smoothed_cross_entropy(logits, targets, eps):
    classes = logits.shape[-1]
    q = (1 - eps) * torch.nn.functional.one_hot(targets, classes) + eps / classes  # smoothed target distribution
    return -(q * logits.log_softmax(-1)).sum(-1).mean()


@torch.no_grad()
def left_padded_scores(model, tokenizer, prompts, token_ids):
    batch = tokenizer(prompts, return_tensors="pt", padding=True, padding_side="left")
    positions = (batch["attention_mask"].cumsum(1) - 1).clamp(min=0)  # 0 at each row's first real token
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], position_ids=positions).logits
    return logits[:, -1].log_softmax(-1)[:, token_ids]  # with left padding every row ends at -1


ANSWERS = {
    # 30 layers × r=8 × [(576 + 576) for q_proj + (576 + 3·64) for v_proj]
    "lora_smollm2_params": 30 * 8 * ((576 + 576) + (576 + 3 * 64)),
    "smoothed_cross_entropy": smoothed_cross_entropy,
    # q_y = 1 − ε + ε/2 = 0.9; the loss is smallest where p_y = sigmoid(m) = q_y, i.e. m = log(0.9 / 0.1)
    "best_margin": math.log((1 - 0.2 / 2) / (0.2 / 2)),
    "left_padded_scores": left_padded_scores,
}
