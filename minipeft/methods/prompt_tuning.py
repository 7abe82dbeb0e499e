"""Prompt tuning: k learned vectors in front of the token embeddings (Lester et al. 2021, arXiv:2104.08691).

    h⁰ = [P ; E x]          P: k × d trained (the "soft prompt");  E: the frozen token-embedding table

        P (k × d, trained)        E x (n × d, frozen lookup)
       ┌────┬────┬────┐          ┌─────┬─────┬─────┬─────┐
       │ p1 │ p2 │ p3 │ ── cat ─ │ the │film │ was │good │      attention mask: k ones in front
       └────┴────┴────┘          └─────┴─────┴─────┴─────┘
                    ▼  k + n positions
       [ frozen transformer body: BertModel / LlamaModel ] ──▶ k + n outputs; the n real ones are used

Where: a forward pre-hook on the transformer body (`core.body`, see virtual_tokens.py) turns `input_ids` into
`inputs_embeds`, puts P in front and adds k ones to the attention mask. Positions: BERT adds its absolute
position embeddings to `inputs_embeds` inside BertEmbeddings, and Llama's rotary positions come from the
sequence length, so in both the real tokens move to positions k..k+n-1, exactly as if k tokens were written
in front. Hence the hard-prompt equivalence: P = E[t₁..t_k] gives the outputs of the input with the tokens
t₁..t_k in front (tested on MiniLM and SmolLM2, and against peft).

Init: "random" N(0, σ²) with σ the standard deviation of E; "vocab" the rows of E of k tokens drawn uniformly
from the vocabulary; "text" the rows of E of the tokens of `text` (e.g. the class names). `text` is a string
(then pass `tokenizer`) or a list of token ids; its token count sets k (leave k=None, or give that same
number; for the other inits k=None means 8). The saved config keeps the token ids, so loading a saved prompt
needs no tokenizer.

Causal LM: a second pre-hook on LlamaForCausalLM pads `labels` with -100 (no loss) over the k virtual
positions, so `model(input_ids, labels=...)` just works; its logits have k + n rows. `generate()` works: the
prompt goes in on the first pass and the later decoding steps find it in the cache.
A Classifier pools only the last n positions, so classification needs nothing extra.

Trainable parameters: k · d.
"""
import torch
from torch import nn

from ..core import body, check_new_adapter, check_positive_int, hooked_layer, pretrained_model, record_and_activate
from .virtual_tokens import VirtualTokenLayer, as_kwargs

INITS = ("random", "vocab", "text")
DEFAULT_K = 8  # virtual tokens when k=None and the init is not a text


class SoftPrompt(nn.Module):
    """The k × d prompt of one adapter. Every prompt module has `k` and returns its (k, d) prompt."""

    def __init__(self, init: torch.Tensor):
        super().__init__()
        self.weight = nn.Parameter(init.detach().clone())
        self.k = init.shape[0]

    def forward(self):
        return self.weight


class PromptLayer(VirtualTokenLayer):
    """Hooked on the transformer body: puts each row's prompt in front of its token embeddings."""

    def insert(self, transformer, kw, names):
        """input_ids → inputs_embeds with each row's prompt in front (token types: segment 0 for the prompt)."""
        ids = kw.pop("input_ids", None)
        embeds = transformer.get_input_embeddings()(ids) if ids is not None else kw["inputs_embeds"]
        prompts = self.stacked(names).to(embeds.dtype)
        kw["inputs_embeds"] = torch.cat([prompts, embeds], 1)
        types = kw.get("token_type_ids")
        if types is not None:  # BERT: the prompt counts as segment 0
            kw["token_type_ids"] = torch.cat([types.new_zeros(prompts.shape[:2]), types], 1)

    def pad_labels(self, top, args, kwargs):
        """Pre-hook on a causal LM: label -100 (no loss) at the k virtual positions."""
        kw = as_kwargs(top, args, kwargs)
        labels = kw.get("labels")
        names = None if labels is None else self.rows(labels.shape[0])
        if names is None:
            return None
        kw["labels"] = torch.cat([labels.new_full((labels.shape[0], self.adapters[names[0]].k), -100), labels], 1)
        return (), kw


def prompt_layer(model) -> PromptLayer:
    """The PromptLayer on the model's transformer body, hooked in the first time (and on a causal LM's labels)."""
    transformer, top = body(model), pretrained_model(model)
    fresh = "prompts" not in transformer._modules
    layer = hooked_layer(transformer, "prompts", PromptLayer)
    if fresh and top is not transformer:
        top.register_forward_pre_hook(layer.pad_labels, with_kwargs=True)
    return layer


def text_token_ids(text, tokenizer, vocab_size: int) -> list[int]:
    """The token ids of init='text': `text` tokenized (no special tokens), or `text` itself if it is a list of ids."""
    if isinstance(text, str):
        if tokenizer is None:
            raise ValueError("init='text' with a string needs tokenizer=... (or pass the token ids as a list)")
        text = tokenizer(text, add_special_tokens=False)["input_ids"]
    if not isinstance(text, (list, tuple)) or not all(isinstance(t, int) and 0 <= t < vocab_size for t in text):
        raise ValueError(f"init='text' needs text= a string or a list of token ids in [0, {vocab_size}), not {text!r}")
    return list(text)


def initial_prompt(table: torch.Tensor, k: int, init: str, token_ids) -> torch.Tensor:
    """A (k, d) starting prompt from the embedding table: random N(0, std(E)²), k random rows, or the text's rows."""
    if init == "random":
        return torch.randn(k, table.shape[1], device=table.device, dtype=table.dtype) * table.std()
    ids = torch.randint(0, table.shape[0], (k,)) if init == "vocab" else torch.tensor(token_ids)
    return table[ids.to(table.device)]


def apply_prompt_tuning(model, k: int | None = None, init: str = "random", text=None, tokenizer=None,
                        name: str = "default"):
    """Add a k × d soft prompt `name` in front of every input; freeze the rest (head excepted).

    init: "random", "vocab" or "text" (then text= a string with tokenizer=..., or a list of token ids; k=None takes
    the text's length). Raises ValueError for a bad k, init or text, or a name in use (model unchanged)."""
    if init not in INITS:
        raise ValueError(f"unknown init {init!r}; choose one of {list(INITS)}")
    if (text is not None) != (init == "text"):
        raise ValueError("pass text=... exactly when init='text'")
    table = body(model).get_input_embeddings().weight.detach()
    token_ids = text_token_ids(text, tokenizer, table.shape[0]) if init == "text" else None
    if token_ids is not None and k is not None and k != len(token_ids):
        raise ValueError(f"the text has {len(token_ids)} tokens but k={k}: leave k=None to take the text's length")
    k = len(token_ids) if token_ids is not None else (DEFAULT_K if k is None else k)
    check_positive_int(k, "the number of virtual tokens k")
    check_new_adapter(model, name)
    prompt_layer(model).adapters[name] = SoftPrompt(initial_prompt(table, k, init, token_ids))
    return record_and_activate(model, name, "prompt_tuning", k=k, init=init, text=token_ids)


def prompt_tuning_parameter_count(k: int, d: int) -> int:
    """Closed form: k · d."""
    return k * d
