"""Helpers shared by the input-side method tests (prompt tuning, P-tuning, deep prompts, prefix tuning): the
hard-prompted version of a batch, greedy generation with its scores, and batches of real sentences."""
import torch
from method_checks import make_batch

PROMPT = [11, 22, 33, 44]  # token ids written in front (hard prompt) or used as the soft prompt's init
SENTENCES = ["The film was a delight from start to finish.", "Dull."]


def hard_prompted(batch: dict, token_ids: list) -> dict:
    """The batch with the tokens written in front: ids, mask (ones), BERT token types (zeros), positions."""
    k, rows = len(token_ids), batch["input_ids"].shape[0]
    front = {"input_ids": torch.tensor(token_ids).expand(rows, k),
             "attention_mask": torch.ones(rows, k, dtype=torch.long),
             "token_type_ids": torch.zeros(rows, k, dtype=torch.long)}
    out = {key: torch.cat([front[key], value], 1) for key, value in batch.items() if key in front}
    if "position_ids" in batch:
        out["position_ids"] = torch.arange(k + batch["position_ids"].shape[1]).expand(rows, -1)
    return out


def assert_close(a: torch.Tensor, b: torch.Tensor, tol: float) -> None:
    gap = (a - b).abs().max().item()
    assert gap <= tol, gap


def greedy(model, ids, mask, steps: int = 6):
    """(new tokens, scores of every step) of greedy generation."""
    out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=steps, do_sample=False,
                         output_scores=True, return_dict_in_generate=True)
    return out.sequences[:, ids.shape[1]:], torch.stack(out.scores)


def left_padded_batch() -> dict:
    """Two rows, the second left-padded (pad id 2), as generation batches are."""
    batch = make_batch(rows=2, length=6)
    batch["attention_mask"] = torch.tensor([[1] * 6, [0, 0] + [1] * 4])
    batch["input_ids"][1, :2] = 2
    return batch


def real_batch(tokenizer, family: str) -> dict:
    batch = dict(tokenizer(SENTENCES, return_tensors="pt", padding=True))
    return batch if family == "bert" else {k: v for k, v in batch.items() if k != "token_type_ids"}
