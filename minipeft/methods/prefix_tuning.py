"""Prefix tuning: learned keys and values in front of every layer's attention (Li & Liang 2021, arXiv:2101.00190).

    at every layer ℓ:   K = [P_k^ℓ ; W_k h],   V = [P_v^ℓ ; W_v h],   mask = [1 … 1 (k) ; mask]
                        P_k^ℓ, P_v^ℓ: n_kv_heads × k × head_dim, trained;  W_k, W_v frozen

        layer ℓ attention                       queries of the n real tokens attend over k + n keys:
       ┌──────────────────────────────┐
       │ K: [ Pk Pk Pk │ k₁ k₂ … kₙ ]  │        Pk, Pv: the prefix (what k virtual tokens would have
       │ V: [ Pv Pv Pv │ v₁ v₂ … vₙ ]  │                stored in the cache — but learned directly)
       │ Q:            [ q₁ q₂ … qₙ ]  │        the sequence itself stays n long
       └──────────────────────────────┘

Where: a forward pre-hook on the transformer body (`core.body`) puts the prefix into a `DynamicCache` and passes
it as `past_key_values` (a fresh cache, or the empty one `generate()` hands in), with k ones added in front of
the attention mask. The body then offsets positions by the cache length: BertModel starts its absolute position
ids at k, LlamaModel its rotary positions, so the real tokens sit at k..k+n-1 as if k tokens were in front
(BERT calls `cache.update` in its self-attention although it never returns a cache). With grouped-query
attention (SmolLM2: 9 query / 3 KV heads) the prefix is stored per KV head, like the cache; Llama's cache holds
keys after the rotary embedding, so prefix keys are used as they are. `generate()`: the cache it gets back holds
prefix + input; later steps find the prefix there and only shift mask and positions.
Hard-prompt equivalence: the keys and values k real tokens would leave at each layer, as a prefix, give the
outputs of those tokens written in front. Llama is causal, so they are the same for every input; BERT is
bidirectional, so a fixed prefix equals a hard prompt only for the input it was read from.

Storage: one row per virtual token, [K¹ V¹ K² V² … Kᴸ Vᴸ], each d_kv = n_kv_heads · head_dim wide (the layout
of peft's prefix embedding). Reparameterisation (`reparam_hidden=h`): the rows are MLP(E), E: k × d trained,
MLP d → h → 2·L·d_kv (tanh), which trains more stably; `fold_prefix` then stores the rows it produces.

Trainable parameters: 2 · L · k · d_kv; with reparam_hidden=h: k·d + (d·h + h) + (h + 1) · 2·L·d_kv.
"""
import torch
from torch import nn
from transformers import DynamicCache

from ..core import body, check_new_adapter, check_positive_int, hooked_layer, record_and_activate, record_config
from .virtual_tokens import VirtualTokenLayer


def kv_sizes(config) -> tuple[int, int, int]:
    """(layers L, key-value heads, head_dim) of a BERT or Llama config."""
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    return config.num_hidden_layers, getattr(config, "num_key_value_heads", None) or heads, head_dim


class Prefix(nn.Module):
    """The per-layer keys and values of k virtual tokens of one adapter: a learned table or MLP(E)."""

    def __init__(self, k: int, config, reparam_hidden: int | None):
        super().__init__()
        layers, kv_heads, head_dim = kv_sizes(config)
        self.k, self.shape = k, (k, layers, 2, kv_heads, head_dim)
        width = layers * 2 * kv_heads * head_dim
        self.table = nn.Parameter(torch.randn(k, width)) if reparam_hidden is None else None
        if reparam_hidden is not None:
            self.embedding = nn.Parameter(torch.randn(k, config.hidden_size))
            self.mlp = nn.Sequential(nn.Linear(config.hidden_size, reparam_hidden), nn.Tanh(),
                                     nn.Linear(reparam_hidden, width))

    def rows(self) -> torch.Tensor:
        """(k, 2·L·d_kv): one row [K¹ V¹ … Kᴸ Vᴸ] per virtual token."""
        return self.table if self.table is not None else self.mlp(self.embedding)

    def forward(self) -> torch.Tensor:
        """(2, L, kv_heads, k, head_dim): keys and values per layer, laid out as a cache holds them."""
        return self.rows().view(self.shape).permute(2, 1, 3, 0, 4)


class PrefixLayer(VirtualTokenLayer):
    """Hooked on the transformer body: hands it a cache that starts with each row's prefix."""
    in_input = False  # the k positions live only in the cache

    def insert(self, transformer, kw, names):
        """Hand the body a cache that holds each row's prefix keys and values (with a mask to extend)."""
        kv = self.stacked(names)  # (batch, 2, L, kv_heads, k, head_dim)
        x = kw["input_ids"] if kw.get("input_ids") is not None else kw["inputs_embeds"]
        if kw.get("attention_mask") is None:  # make_room needs a mask to put the k ones in front of
            kw["attention_mask"] = torch.ones(x.shape[:2], dtype=torch.long, device=x.device)
        cache = kw.get("past_key_values")
        cache = DynamicCache() if cache is None else cache  # generate() passes an empty cache: fill that one
        for layer in range(kv.shape[2]):
            cache.update(kv[:, 0, layer], kv[:, 1, layer], layer)
        kw["past_key_values"] = cache


def apply_prefix_tuning(model, k: int = 8, reparam_hidden: int | None = None, name: str = "default"):
    """Add a k-token prefix `name` to the keys and values of every layer; freeze the rest (head excepted).
    reparam_hidden=h trains the prefix through an MLP of width h (fold_prefix removes it after training).
    Raises ValueError for a bad k or width, or a name in use (model unchanged)."""
    check_positive_int(k, "the number of virtual tokens k")
    if reparam_hidden is not None:
        check_positive_int(reparam_hidden, "reparam_hidden (the MLP's hidden size, or None)")
    check_new_adapter(model, name)
    transformer = body(model)
    prefix = Prefix(k, transformer.config, reparam_hidden).to(transformer.get_input_embeddings().weight.device)
    hooked_layer(transformer, "prefixes", PrefixLayer).adapters[name] = prefix
    return record_and_activate(model, name, "prefix_tuning", k=k, reparam_hidden=reparam_hidden)


@torch.no_grad()
def fold_prefix(model, name: str = "default"):
    """Replace the MLP of a reparameterised prefix by the table it produces (outputs unchanged). Raises KeyError
    when the model has no prefix `name`."""
    layer = body(model)._modules.get("prefixes")
    if layer is None or name not in layer.adapters:
        raise KeyError(f"no prefix named {name!r} on this model")
    prefix = layer.adapters[name]
    if prefix.table is None:
        prefix.table = nn.Parameter(prefix.rows().clone())
        prefix.embedding = prefix.mlp = None
    record_config(model, name, "prefix_tuning", k=prefix.k, reparam_hidden=None)  # saves and loads as a table
    return model


def prefix_tuning_parameter_count(k: int, layers: int, d_kv: int, d: int = 0, reparam_hidden: int | None = None) -> int:
    """Closed form: 2·L·k·d_kv; reparameterised k·d + (d·h + h) + (h + 1)·2·L·d_kv (E, then the MLP's two linears)."""
    width = 2 * layers * d_kv
    if reparam_hidden is None:
        return k * width
    return k * d + d * reparam_hidden + reparam_hidden + (reparam_hidden + 1) * width
