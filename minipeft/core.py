"""Shared machinery that every method file uses, written once: targeting, freezing, counting, switching.

Vocabulary
    base model      the pretrained transformers model (BertModel, LlamaForCausalLM, ...), frozen by PEFT methods
    adapter layer   a module a method inserts (LoRALinear, BottleneckAdapter, ...). It subclasses `AdapterLayer`
                    and keeps one small module per adapter *name* in `self.adapters`, so one base model can hold
                    several adapters (one per task or per user) and switch between them.
    active          which adapter an adapter layer runs: a name, None (base behaviour), or a list with one name
                    per row of the batch (a "mixed batch": a different adapter per row in one forward pass).
    head            a task head (module named `head`, e.g. the classifier's). It is always trained and saved.
"""
import re

import torch
from torch import nn


class AdapterLayer(nn.Module):
    """Base class of every module a method inserts. Holds named adapters and which one is active."""

    def __init__(self):
        super().__init__()
        self.adapters = nn.ModuleDict()
        self.active = None  # str | list[str] (one name per row) | None

    def row_mask(self, name: str, like: torch.Tensor) -> torch.Tensor:
        """(batch, 1, ..., 1) mask that is 1 on the rows whose active adapter is `name` (mixed batches)."""
        rows = torch.tensor([a == name for a in self.active], dtype=like.dtype, device=like.device)
        return rows.view(-1, *([1] * (like.dim() - 1)))

    def active_names(self) -> list:
        if self.active is None:
            return []
        return [self.active] if isinstance(self.active, str) else sorted(set(self.active))


# ---------------------------------------------------------------- finding modules by name
def pretrained_model(model: nn.Module) -> nn.Module:
    """The transformers model inside `model` (the model itself, or the backbone of a Classifier)."""
    from transformers import PreTrainedModel
    for module in model.modules():
        if isinstance(module, PreTrainedModel):
            return module
    raise TypeError(f"{type(model).__name__} holds no transformers PreTrainedModel")


def body(model: nn.Module) -> nn.Module:
    """The transformer body that takes input_ids / inputs_embeds / past_key_values: BertModel, LlamaModel.
    Prompt and prefix methods hook here, so they work under a Classifier and under LlamaForCausalLM alike."""
    return pretrained_model(model).base_model


def find_modules(model: nn.Module, targets, kind=nn.Linear) -> list:
    """[(name, module)] of every `kind` module whose name matches a target.

    Modules already wrapped by an adapter layer count as what they wrap (a second LoRA finds `query` again).
    A target matches a module if it equals the module's last name component (`"query"`), the end of its dotted
    name (`"attention.self.query"`), or, written as `"re:<regex>"`, the whole name. Every target must match
    something; otherwise ValueError lists the candidates (peft's most common surprise is a silent partial match).
    """
    targets = [targets] if isinstance(targets, str) else list(targets)
    if not targets:
        raise ValueError("target_modules is empty: name at least one module, e.g. ['query', 'value']")
    named = [(n, m) for n, m in model.named_modules()
             if isinstance(unwrap(m), kind) and not n.endswith(".base") and ".adapters." not in f".{n}."]

    def hits(target, name):
        if target.startswith("re:"):
            return re.fullmatch(target[3:], name) is not None
        return name == target or name.endswith("." + target)

    unmatched = [t for t in targets if not any(hits(t, n) for n, _ in named)]
    if unmatched:
        candidates = sorted({n.split(".")[-1] for n, _ in named})
        raise ValueError(f"target module(s) {unmatched} match no {kind.__name__} in {type(model).__name__}. "
                         f"Candidates (last name component): {candidates}")
    return [(n, m) for n, m in named if any(hits(t, n) for t in targets)]


def unwrap(module: nn.Module) -> nn.Module:
    """The original module inside adapter-layer wrappers (a wrapper keeps it as `.base`)."""
    while isinstance(module, AdapterLayer) and hasattr(module, "base"):
        module = module.base
    return module


def replace_module(model: nn.Module, name: str, new: nn.Module) -> None:
    """Put `new` where the submodule called `name` is."""
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, new)


def hooked_layer(module: nn.Module, attr: str, make) -> AdapterLayer:
    """`module.<attr>`: an adapter layer that rewrites the inputs of `module` in its `pre_hook(module, args,
    kwargs)`. Made with `make()` and registered as a forward pre-hook the first time (prompts, prefixes)."""
    if attr not in module._modules:
        layer = make()
        module.add_module(attr, layer)
        module.register_forward_pre_hook(layer.pre_hook, with_kwargs=True)
    return module._modules[attr]


def adapter_layers(model: nn.Module) -> list:
    return [m for m in model.modules() if isinstance(m, AdapterLayer)]


def check_new_adapter(model: nn.Module, name: str) -> None:
    """Refuse a second adapter with the same name: applying a method twice under one name is a mistake."""
    if any(name in layer.adapters for layer in adapter_layers(model)):
        raise ValueError(f"an adapter named {name!r} already exists on this model; pass another name=..., "
                         f"or remove_adapter(model, {name!r}) first")


# ---------------------------------------------------------------- freezing
def freeze(model: nn.Module) -> None:
    for p in model.parameters():
        p.requires_grad_(False)


def mark_trainable(model: nn.Module, predicate) -> int:
    """Make trainable exactly the parameters for which predicate(name, parameter) is true (plus none else)."""
    count = 0
    for name, p in model.named_parameters():
        p.requires_grad_(bool(predicate(name, p)))
        count += p.numel() if p.requires_grad else 0
    return count


def is_head(name: str) -> bool:
    return name.startswith("head.") or ".head." in name


def train_adapters_only(model: nn.Module) -> None:
    """The PEFT rule: freeze the base model; train the adapter parameters and the task head."""
    mark_trainable(model, lambda n, p: ".adapters." in f".{n}" or is_head(n))


# ---------------------------------------------------------------- switching adapters
def adapter_names(model: nn.Module) -> list:
    return sorted({name for layer in adapter_layers(model) for name in layer.adapters})


def set_adapter(model: nn.Module, active) -> None:
    """Activate one adapter by name, None for the plain base model, or a list of names (one per batch row)."""
    names = adapter_names(model)
    wanted = [active] if isinstance(active, str) else list(active or [])
    unknown = sorted(set(wanted) - set(names))
    if unknown:
        raise KeyError(f"no adapter named {unknown} on this model; it has {names}")
    for layer in adapter_layers(model):
        layer.active = active if active is None or isinstance(active, str) else list(active)


def disable_adapters(model: nn.Module) -> None:
    set_adapter(model, None)


def remove_adapter(model: nn.Module, name: str) -> None:
    if name not in adapter_names(model):
        raise KeyError(f"no adapter named {name!r} on this model; it has {adapter_names(model)}")
    for layer in adapter_layers(model):
        if name in layer.adapters:
            del layer.adapters[name]
        if layer.active == name or isinstance(layer.active, list) and name in layer.active:
            layer.active = None
    getattr(pretrained_model(model), "minipeft_configs", {}).pop(name, None)  # what saving.record_config kept
