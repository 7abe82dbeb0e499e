"""Machinery shared by the methods that put k virtual tokens in front of the input: prompt tuning, P-tuning,
deep prompts (the k positions are in the input sequence) and prefix tuning (they are only in the keys/values).

    body(input_ids, attention_mask, position_ids, past_key_values, ...)
      ▲
      └── forward pre-hook of a VirtualTokenLayer (one per body, holding every adapter of its method):
            first pass (no cache, or an empty one):  insert the k virtual tokens (the method's `insert`)
            every pass:  attention mask  [1 … 1 (k) ; mask],   given position ids  +k  (0..k-1 in front
                         when the k positions are in this input)
            later decoding steps (the cache is filled): the virtual tokens are already in the cache

Positions without position ids come out right by themselves: BertEmbeddings adds absolute positions to
`inputs_embeds` (and offsets them by the cache length), LlamaModel counts rotary positions from the sequence
length plus the cache length. Either way the real tokens sit at positions k..k+n-1, as if k tokens stood in
front. `generate()` passes position ids made from the attention mask (0..n-1); the hook moves them on by k.
"""
import inspect

import torch

from ..core import AdapterLayer, names_per_row


def as_kwargs(module, args, kwargs) -> dict:
    """A forward call's positional arguments named, so a hook can read and replace them by name."""
    return {**dict(zip(inspect.signature(module.forward).parameters, args)), **kwargs}


def make_room(kw: dict, k: int, prepended: bool) -> None:
    """k virtual positions in front: the attention mask gets k ones, given position ids move on by k (and get
    0..k-1 in front when the k positions are in this input)."""
    mask, positions = kw.get("attention_mask"), kw.get("position_ids")
    if mask is not None:
        if mask.dim() != 2:
            raise ValueError("prompt and prefix methods need a 2D (batch, length) attention mask")
        kw["attention_mask"] = torch.cat([mask.new_ones(mask.shape[0], k), mask], 1)
    if positions is not None:
        front = torch.arange(k, device=positions.device).expand(positions.shape[0], k)
        kw["position_ids"] = torch.cat([front, positions + k], 1) if prepended else positions + k


class VirtualTokenLayer(AdapterLayer):
    """Base of the layers hooked on the transformer body. Each adapter module has `k` and returns its tensor;
    subclasses say how it goes in (`insert(transformer, kwargs, names)`, called on the first pass only)."""
    in_input = True  # the k positions are part of the input sequence (prompts), not only of the cache (prefixes)

    def rows(self, batch: int) -> list[str] | None:
        """The active adapter of each row, or None when no adapter of this layer is active (base behaviour)."""
        names = names_per_row(self.active, batch)
        held = [n in self.adapters for n in names]
        if not any(held):
            return None
        if not all(held) or len(names) != batch:
            raise ValueError(f"mixed batch {names} for {batch} rows: every row needs one of {list(self.adapters)}")
        lengths = {n: self.adapters[n].k for n in names}
        if len(set(lengths.values())) > 1:
            raise ValueError(f"a mixed batch stacks one prompt per row, so all need the same k; got {lengths}")
        return names

    def stacked(self, names: list) -> torch.Tensor:
        """Each row's adapter output, stacked into a batch; each adapter runs once."""
        values = {n: self.adapters[n]() for n in set(names)}
        return torch.stack([values[n] for n in names])

    def pre_hook(self, transformer, args, kwargs):
        """Runs before the transformer body: insert the virtual tokens (first pass) and make room for them."""
        kw = as_kwargs(transformer, args, kwargs)
        x = kw["input_ids"] if kw.get("input_ids") is not None else kw["inputs_embeds"]
        names = self.rows(x.shape[0])
        if names is None:
            return None  # inputs untouched: exactly the base model
        k, cache = self.adapters[names[0]].k, kw.get("past_key_values")
        first = cache is None or cache.get_seq_length() == 0
        if first:
            limit = transformer.config.max_position_embeddings
            if k + x.shape[1] > limit:
                raise ValueError(f"{k} virtual + {x.shape[1]} input tokens = {k + x.shape[1]} positions, more than "
                                 f"this model's max_position_embeddings={limit}: truncate the input to "
                                 f"{limit - k} tokens or use a smaller k")
            self.insert(transformer, kw, names)
        make_room(kw, k, prepended=first and self.in_input)
        return (), kw
