"""Token classification (tagging): one label per word, read from the hidden state of the word's first sub-token.

    logits_t = head(h_t)   at every position t; the loss reads only each word's first sub-token (label ≠ -100)

    words             Japan    began   the    defence
    tokens    [CLS]   japan    began   the    def   ##ence   [SEP]
    labels    -100    B-LOC    O       O      O     -100     -100        (batching.align_labels)
                        ┌──────── trained ────────┐
    tokens ─▶ [ transformer (frozen or adapted) ] ─▶ h_1 .. h_n of layer ℓ ─▶ head at every position

The same head as the sentence Classifier (linear, or MLP d → d → C), so every method of the course applies
unchanged: apply_probe, apply_lora, apply_finetune, ... and minipeft.train.train(..., task="tokens").
Named entities are scored by entity, not by word: an entity counts as found only if its type and both ends are
exactly right (entity_f1), as in the CoNLL-2003 shared task. An I-X that follows O or another type starts an
entity, as the shared task's conlleval script reads it.

Parameters: linear head d·C + C; MLP head d·d + d + d·C + C (probing.probe_parameter_count).
Reference: Tjong Kim Sang & De Meulder 2003, "Introduction to the CoNLL-2003 shared task"; Devlin et al. 2019,
"BERT" (§5.3, the first sub-token of each word); Hewitt & Liang 2019, "Designing and interpreting probes with
control tasks".
"""
import torch
from torch.nn import functional as F

from ..batching import batches_with_rows
from .probing import Classifier


class TokenClassifier(Classifier):
    """A tagger: `head(h_t)` for every position t of layer `layer`'s hidden states, over any transformers
    backbone. head: "linear" or "mlp". forward returns {"loss", "logits" (batch, positions, C)}; the loss
    (cross-entropy over the positions whose label is not -100) only when labels are given."""

    def __init__(self, backbone, num_labels: int, layer: int = -1, head: str = "linear"):
        super().__init__(backbone, num_labels, pooling="cls", layer=layer, head=head)
        self.options = {"num_labels": num_labels, "per_token": True, "layer": layer, "head": head}

    def forward(self, input_ids, attention_mask=None, labels=None, **kwargs):
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        hidden = self.hidden_states(input_ids, attention_mask, **kwargs)[:, -input_ids.shape[1]:]  # no virtual tokens
        logits = self.head(hidden)
        loss = None if labels is None else F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100)
        return {"loss": loss, "logits": logits}


@torch.no_grad()
def predict_tags(model, loader) -> list[list[int]]:
    """The predicted tag of every word (its first sub-token's argmax), one list per row, in dataset order.
    `loader` is a batching.make_loader(..., task="tokens"); words cut off by max_length get no guess."""
    was_training, device = model.training, next(model.parameters()).device
    model.eval()
    guesses = {}
    for rows, batch in batches_with_rows(loader):
        batch = {k: v.to(device) for k, v in batch.items()}
        best = model(**{k: v for k, v in batch.items() if k != "labels"})["logits"].argmax(-1)
        for i, row in enumerate(rows):
            guesses[row] = best[i][batch["labels"][i] != -100].tolist()
    model.train(was_training)
    return [guesses[row] for row in sorted(guesses)]


def entity_spans(tags: list[str]) -> set[tuple[str, int, int]]:
    """The entities of one sentence's IOB tags as (type, first word, one past the last word). B-X starts an
    entity; I-X continues one of type X, or starts one after O or another type; O ends one."""
    spans, kind, start = set(), None, 0
    for i, tag in enumerate([*tags, "O"]):
        prefix, _, name = tag.partition("-")
        if kind is not None and (prefix != "I" or name != kind):
            spans.add((kind, start, i))
            kind = None
        if prefix in ("B", "I") and kind is None:
            kind, start = name, i
    return spans


def entity_f1(gold: list[list[str]], predicted: list[list[str]]) -> dict:
    """Entity-level precision, recall and F1 over sentences (exact type and span), with the counts:
    {"precision", "recall", "f1", "gold", "predicted", "correct"}. Empty sides score 0 (not NaN)."""
    if len(gold) != len(predicted):
        raise ValueError(f"{len(gold)} gold sentences but {len(predicted)} predicted")
    g = [entity_spans(tags) for tags in gold]
    p = [entity_spans(tags) for tags in predicted]
    correct = sum(len(a & b) for a, b in zip(g, p))
    n_gold, n_pred = sum(map(len, g)), sum(map(len, p))
    precision, recall = correct / max(n_pred, 1), correct / max(n_gold, 1)
    f1 = 2 * precision * recall / (precision + recall) if correct else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "gold": n_gold, "predicted": n_pred,
            "correct": correct}
