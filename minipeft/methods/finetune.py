"""Full and partial fine-tuning: the baselines every PEFT method is measured against.

    full (default)            every parameter trains
    top_k=k                   the last k transformer layers + everything above them (final norm, pooler, head)
    freeze_embeddings=True    everything but the embedding layer

        head (Classifier / lm_head)      trained always (lm_head: unless tied to the embeddings, see below)
        final norm (Llama), pooler (BERT)  trained       ┐
        layer L-1                         trained        │ top_k = 2
        layer L-2                         trained        ┘
        ...                               frozen under top_k
        layer 0                           frozen under top_k
        embeddings                        frozen under top_k or freeze_embeddings

With top_k, the parameters that sit above the layer stack train with it: Llama's final RMSNorm normalises the
last layer's output that the head reads, so freezing it would only hobble the top layers. SmolLM2 ties lm_head
to the token embeddings (one matrix), so whenever the embeddings are frozen, so is lm_head.

Trainable parameters: full = P_total; freeze_embeddings = P_total − P_emb; top_k = P_total − P_emb − (L − k)·P_layer.
References: Howard & Ruder 2018, "Universal Language Model Fine-tuning" (ULMFiT), arXiv:1801.06146; Lee et al.
2019, "What Would Elsa Do? Freezing Layers During Transformer Fine-Tuning", arXiv:1911.03090.
"""
from torch import nn

from ..core import body, check_new_adapter, mark_trainable, pretrained_model, record_config


def layer_stack(model) -> nn.ModuleList:
    """The transformer layers in order: BERT `encoder.layer`, Llama `model.layers`."""
    n = pretrained_model(model).config.num_hidden_layers
    for module in body(model).modules():
        if isinstance(module, nn.ModuleList) and len(module) == n:
            return module
    raise TypeError(f"found no list of {n} transformer layers in {type(body(model)).__name__}")


def embedding_layer(model) -> nn.Module:
    """BERT's `embeddings` block (word, position, token type, LayerNorm); Llama's `embed_tokens`."""
    transformer = body(model)
    return transformer.embeddings if hasattr(transformer, "embeddings") else transformer.get_input_embeddings()


def frozen_parameters(model, top_k, freeze_embeddings) -> set[int]:
    """ids of the parameters that stay frozen."""
    frozen = []
    if freeze_embeddings or top_k is not None:
        frozen += embedding_layer(model).parameters()
    if top_k is not None:
        for layer in layer_stack(model)[:-top_k]:  # all but the last top_k (top_k >= 1)
            frozen += layer.parameters()
    return {id(p) for p in frozen}


def apply_finetune(model, top_k: int | None = None, freeze_embeddings: bool = False, name: str = "default"):
    """Make every parameter trainable, or only the top `top_k` layers and above, or all but the embeddings.
    Raises ValueError for a top_k outside [1, layers] or a name in use; the model is then unchanged."""
    n_layers = pretrained_model(model).config.num_hidden_layers
    if top_k is not None and (not isinstance(top_k, int) or not 1 <= top_k <= n_layers):
        raise ValueError(f"top_k must be an integer in [1, {n_layers}] (this model has {n_layers} layers), "
                         f"or None to train all of them; got {top_k!r}")
    check_new_adapter(model, name)
    frozen = frozen_parameters(model, top_k, freeze_embeddings)
    record_config(model, name, "finetune", top_k=top_k, freeze_embeddings=freeze_embeddings)
    mark_trainable(model, lambda n, p: id(p) not in frozen)
    return model


def finetune_parameter_count(total: int, embeddings: int, per_layer: int, num_layers: int,
                             top_k: int | None = None, freeze_embeddings: bool = False) -> int:
    """Closed form from the model's total, its embedding layer's and one transformer layer's parameter counts."""
    if top_k is not None:
        return total - embeddings - (num_layers - top_k) * per_layer
    return total - embeddings if freeze_embeddings else total
