"""Probing: a small classifier on top of a frozen pretrained model.

    logits = head(pool(h_1 .. h_n))        h = hidden states of one layer of the frozen model

    model = Classifier(backbone, num_labels=2, pooling="mean")   # the task head, used by every method
    apply_probe(model)                                           # probing: freeze everything but the head

                  ┌──────── trained ────────┐
    tokens ─▶ [ frozen transformer ] ─▶ pool ─▶ head ─▶ logits
                   layer ℓ hidden states      cls | mean | last

The same `Classifier` wraps the backbone for *every* method in the course, so results are comparable: a
method changes what happens inside the backbone, the pooling and head stay the same. Only the rows of the
real tokens are pooled: prompt-tuning methods prepend virtual tokens, which the head never reads directly.

Parameters: linear head d·C + C; MLP head d·d + d + d·C + C (C classes, d hidden size).
Reference: Alain & Bengio 2016, "Understanding intermediate layers using linear classifier probes";
Tenney et al. 2019, "What do you learn from context? Probing for sentence structure".
"""
import torch
from torch import nn
from torch.nn import functional as F

from ..core import check_new_adapter, is_head, mark_trainable, record_config

POOLINGS, HEADS = ("cls", "mean", "last"), ("linear", "mlp")


class Classifier(nn.Module):
    """A sequence classifier: `head(pool(hidden states of layer `layer`))` over any transformers backbone.

    pooling: "cls" (first token), "mean" (of the real tokens) or "last" (last real token, for causal LMs);
    layer: which hidden states (-1 the last, 0 the embeddings); head: "linear" or "mlp" (d → d → C, GELU).
    forward returns {"loss", "logits"}; the loss (cross-entropy) only when labels are given."""
    accepts_loss_kwargs = False  # transformers.Trainer: the loss is a mean, divide it by the accumulation steps

    def __init__(self, backbone, num_labels: int = 2, pooling: str = "mean", layer: int = -1, head: str = "linear"):
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, not {pooling!r}")
        if head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, not {head!r}")
        n_layers = backbone.config.num_hidden_layers
        if not -n_layers - 1 <= layer <= n_layers:
            raise ValueError(f"layer must be in [{-n_layers - 1}, {n_layers}] (0 = embeddings), not {layer}")
        self.backbone, self.pooling, self.layer = backbone, pooling, layer
        self.options = {"num_labels": num_labels, "pooling": pooling, "layer": layer, "head": head}  # saving checks
        d, device = backbone.config.hidden_size, next(backbone.parameters()).device  # the head sits by the backbone
        self.head = (nn.Linear(d, num_labels) if head == "linear" else
                     nn.Sequential(nn.Linear(d, d), nn.GELU(), nn.Linear(d, num_labels))).to(device)

    @property
    def config(self):
        """The backbone's transformers config (so code that reads model.config works on a Classifier too)."""
        return self.backbone.config

    def pool(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """One vector per row from the hidden states of its real tokens: the first, their mean, or the last."""
        hidden = hidden[:, -mask.shape[1]:]  # drop virtual tokens a prompt method put in front
        mask = mask.unsqueeze(-1).to(hidden.dtype)
        if self.pooling == "cls":
            return hidden[:, 0]
        if self.pooling == "mean":
            return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
        last = mask.squeeze(-1).cumsum(1).argmax(1)  # index of the last real token (right padding)
        return hidden[torch.arange(hidden.shape[0]), last]

    def hidden_states(self, input_ids, attention_mask, **kwargs) -> torch.Tensor:
        """The hidden states of layer `layer` (batch, positions, d); virtual tokens in front are still there."""
        transformer = self.backbone.base_model  # the body: LlamaModel inside LlamaForCausalLM; a BertModel itself
        wants_layer = self.layer != -1
        out = transformer(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=wants_layer,
                          **kwargs)
        return out.hidden_states[self.layer] if wants_layer else out.last_hidden_state

    def forward(self, input_ids, attention_mask=None, labels=None, **kwargs):
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        logits = self.head(self.pool(self.hidden_states(input_ids, attention_mask, **kwargs), attention_mask))
        loss = F.cross_entropy(logits, labels) if labels is not None else None
        return {"loss": loss, "logits": logits}


def apply_probe(model, name: str = "default"):
    """Probing: freeze everything but the task head of `model` (a Classifier). Recorded under `name` like every
    other method, so it is saved, loaded and compared the same way. Raises ValueError for a model without a head
    or a name in use (model unchanged)."""
    if not any(is_head(n) for n, _ in model.named_parameters()):
        raise ValueError(f"{type(model).__name__} has no task head to train: wrap the backbone first, "
                         f"apply_probe(Classifier(backbone, num_labels=...))")
    check_new_adapter(model, name)
    record_config(model, name, "probe")
    mark_trainable(model, lambda n, p: is_head(n))
    return model


def probe_parameter_count(hidden_size: int, num_labels: int, head: str = "linear") -> int:
    """Closed form: d·C + C for a linear head; d·d + d + d·C + C for the MLP head."""
    d, c = hidden_size, num_labels
    return d * c + c if head == "linear" else d * d + d + d * c + c
