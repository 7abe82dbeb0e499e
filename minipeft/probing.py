"""Probing: a small classifier on top of a frozen pretrained model.

    logits = head(pool(h_1 .. h_n))        h = hidden states of one layer of the frozen model

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

from .core import freeze


class Classifier(nn.Module):
    def __init__(self, backbone, num_labels: int = 2, pooling: str = "mean", layer: int = -1, head: str = "linear"):
        super().__init__()
        if pooling not in ("cls", "mean", "last"):
            raise ValueError(f"pooling must be 'cls', 'mean' or 'last', not {pooling!r}")
        if head not in ("linear", "mlp"):
            raise ValueError(f"head must be 'linear' or 'mlp', not {head!r}")
        n_layers = backbone.config.num_hidden_layers
        if not -n_layers - 1 <= layer <= n_layers:
            raise ValueError(f"layer must be in [{-n_layers - 1}, {n_layers}] (0 = embeddings), not {layer}")
        self.backbone, self.pooling, self.layer = backbone, pooling, layer
        d = backbone.config.hidden_size
        self.head = nn.Linear(d, num_labels) if head == "linear" else \
            nn.Sequential(nn.Linear(d, d), nn.GELU(), nn.Linear(d, num_labels))

    @property
    def config(self):
        return self.backbone.config

    def pool(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        hidden = hidden[:, -mask.shape[1]:]  # drop virtual tokens a prompt method put in front
        mask = mask.unsqueeze(-1).to(hidden.dtype)
        if self.pooling == "cls":
            return hidden[:, 0]
        if self.pooling == "mean":
            return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
        last = mask.squeeze(-1).cumsum(1).argmax(1)  # index of the last real token (right padding)
        return hidden[torch.arange(hidden.shape[0]), last]

    def forward(self, input_ids, attention_mask=None, labels=None, **kwargs):
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        core = self.backbone.base_model  # the body: LlamaModel inside LlamaForCausalLM; a BertModel itself
        wants_layer = self.layer != -1
        out = core(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=wants_layer, **kwargs)
        hidden = out.hidden_states[self.layer] if wants_layer else out.last_hidden_state
        logits = self.head(self.pool(hidden, attention_mask))
        loss = F.cross_entropy(logits, labels) if labels is not None else None
        return {"loss": loss, "logits": logits}


def apply_probe(backbone, num_labels: int = 2, pooling: str = "mean", layer: int = -1, head: str = "linear"):
    """A Classifier with the backbone frozen: only the head trains."""
    model = Classifier(backbone, num_labels, pooling, layer, head)
    freeze(model.backbone)
    return model


def probe_parameter_count(hidden_size: int, num_labels: int, head: str = "linear") -> int:
    d, c = hidden_size, num_labels
    return d * c + c if head == "linear" else d * d + d + d * c + c
