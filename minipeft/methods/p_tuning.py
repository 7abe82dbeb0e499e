"""P-tuning (Liu et al. 2021, "GPT Understands, Too", arXiv:2103.10385) and deep prompts (P-tuning v2, Liu et
al. 2022, arXiv:2110.07602): two ways to get more out of virtual tokens than prompt tuning's free k × d matrix.

P-tuning: the prompt is the output of a small prompt encoder over k learned input vectors, so the virtual tokens
depend on each other and train more stably (the paper's reason for it):

    P = MLP(E)                 encoder="mlp":  E: k × h trained, MLP h → h → d (ReLU)
    P = MLP(BiLSTM(E))         encoder="lstm": 2-layer bidirectional LSTM (h per direction), MLP 2h → h → d

       E (k × h) ──▶ [ BiLSTM ] ──▶ [ MLP ] ──▶ P (k × d) ──▶ in front of E x, exactly as in prompt tuning

It reuses prompt tuning's PromptLayer and hook: the layer asks each adapter module for its (k, d) prompt.
Trainable parameters (all of it is only needed for training; the k × d output is what inference uses):
    mlp:  k·h + (h·h + h) + (h·d + d)
    lstm: k·h + (40h² + 32h) + (2h·h + h) + (h·d + d)     LSTM: 2 layers × 2 directions × 4 gates, inputs h, 2h

Deep prompts: learned vectors at EVERY layer. k vectors go in front of the input, and before each following
transformer layer the hidden states at the k virtual positions are overwritten with that layer's own vectors:

    h⁰ = [P⁰ ; E x]         hˡ = Layerₗ([Pˡ ; hˡ⁻¹ at the real positions])   for ℓ = 1 … L-1

    E x ─▶ [P⁰; ·] ─▶ layer 0 ─▶ [P¹ overwrites] ─▶ layer 1 ─▶ [P² overwrites] ─▶ … ─▶ layer L-1

Trainable parameters: L · k · d. The overwrite is a forward pre-hook on each layer module (found with
find_modules); it skips decoding steps, whose virtual positions are already in the cache.
How this differs from prefix tuning: a prefix learns each layer's keys and values directly (2·L·k·d_kv
numbers, attention sees them as they are); a deep prompt learns hidden vectors (L·k·d numbers) that each
layer projects itself through its frozen W_k, W_v (and LayerNorm), so they are also queries and pass through
that layer's MLP — the same mechanism as the input prompt, applied at every depth.
"""
import torch
from torch import nn

from ..core import (AdapterLayer, body, check_new_adapter, check_positive_int, find_modules, hooked_layer,
                    names_per_row, record_and_activate)
from .prompt_tuning import SoftPrompt, initial_prompt, prompt_layer

ENCODERS = ("mlp", "lstm")
LAYER_LIST = r"re:(.*\.)?layers?\.\d+"  # BERT encoder.layer.N, Llama model.layers.N


class PromptEncoder(nn.Module):
    """P-tuning's prompt of one adapter: k learned vectors through an (LSTM +) MLP, giving (k, d)."""

    def __init__(self, k: int, d: int, hidden: int, encoder: str):
        super().__init__()
        self.k = k
        self.inputs = nn.Parameter(torch.randn(k, hidden))
        self.lstm = nn.LSTM(hidden, hidden, num_layers=2, bidirectional=True, batch_first=True) \
            if encoder == "lstm" else None
        width = hidden if self.lstm is None else 2 * hidden
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.ReLU(), nn.Linear(hidden, d))

    def forward(self):
        x = self.inputs if self.lstm is None else self.lstm(self.inputs[None])[0][0]
        return self.mlp(x)


def apply_p_tuning(model, k: int = 8, encoder: str = "mlp", hidden: int = 128, name: str = "default"):
    """Add a P-tuning prompt `name`: k virtual tokens made by a prompt encoder ("mlp" or "lstm", `hidden` wide);
    freeze the rest (head excepted). Raises ValueError for a bad k, encoder or width, or a name in use."""
    check_positive_int(k, "the number of virtual tokens k")
    if encoder not in ENCODERS:
        raise ValueError(f"unknown prompt encoder {encoder!r}; choose one of {list(ENCODERS)}")
    check_positive_int(hidden, "hidden (the prompt encoder's width)")
    check_new_adapter(model, name)
    table = body(model).get_input_embeddings().weight
    prompt_layer(model).adapters[name] = PromptEncoder(k, table.shape[1], hidden, encoder).to(table.device)
    return record_and_activate(model, name, "p_tuning", k=k, encoder=encoder, hidden=hidden)


def p_tuning_parameter_count(k: int, d: int, hidden: int, encoder: str = "mlp") -> int:
    """Closed form of the prompt encoder's parameters (see the module docstring)."""
    h = hidden
    if encoder == "mlp":
        return k * h + (h * h + h) + (h * d + d)
    return k * h + (40 * h * h + 32 * h) + (2 * h * h + h) + (h * d + d)


class DeepPromptLayer(AdapterLayer):
    """On transformer layer `index`: the hidden states at the k virtual positions become this layer's vectors
    (rows whose adapter this layer does not hold, e.g. a plain prompt in a mixed batch, pass unchanged)."""

    def __init__(self, index: int):
        super().__init__()
        self.index = index

    def pre_hook(self, layer, args, kwargs):
        """Runs before transformer layer `index`: overwrite the k virtual positions of the rows this layer serves."""
        hidden = args[0] if args else kwargs["hidden_states"]
        names = names_per_row(self.active, hidden.shape[0])
        held = [n for n in names if n in self.adapters]
        cache = kwargs.get("past_key_values")
        if not held or (cache is not None and cache.get_seq_length(self.index) > 0):
            return None  # not active, or a decoding step: the virtual positions are already in the cache
        k, values = self.adapters[held[0]].k, {n: self.adapters[n]() for n in set(held)}
        front = torch.stack([values[n] if n in values else hidden[i, :k] for i, n in enumerate(names)])
        hidden = torch.cat([front.to(hidden.dtype), hidden[:, k:]], 1)
        return ((hidden, *args[1:]), kwargs) if args else (args, {**kwargs, "hidden_states": hidden})


def apply_deep_prompts(model, k: int = 8, name: str = "default"):
    """Add deep prompt `name`: k vectors at the input and k vectors at each following layer (L·k·d in all).
    Raises ValueError for a bad k or a name in use (model unchanged)."""
    check_positive_int(k, "the number of virtual tokens k")
    layers = find_modules(model, LAYER_LIST, kind=nn.Module)
    check_new_adapter(model, name)
    table = body(model).get_input_embeddings().weight.detach()
    prompt_layer(model).adapters[name] = SoftPrompt(initial_prompt(table, k, "random", None))
    for index, (_, layer) in enumerate(layers):
        if index > 0:  # layer 0 reads the input prompt
            deep = hooked_layer(layer, "deep_prompts", lambda i=index: DeepPromptLayer(i))
            deep.adapters[name] = SoftPrompt(initial_prompt(table, k, "random", None))
    return record_and_activate(model, name, "deep_prompt", k=k)


def deep_prompt_parameter_count(k: int, d: int, layers: int) -> int:
    """Closed form: L · k · d (the input prompt and one k × d matrix for each of the other L - 1 layers)."""
    return layers * k * d
