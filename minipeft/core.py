"""Shared machinery that every method file uses, written once: adapter layers, targeting, freezing, the record of
which method was applied under which name, switching, and mixed batches.

Vocabulary
    base model      the pretrained transformers model (BertModel, LlamaForCausalLM, ...), frozen by PEFT methods
    adapter         what a method adds to the base model, under a *name* ("default", "sentiment", ...). Every method
                    of the course is one, BitFit and fine-tuning included (they train tensors of the base itself).
    adapter layer   a module a method inserts (LoRALinear, BottleneckLayer, ...). It subclasses `AdapterLayer` and
                    keeps one small module per adapter name in `self.adapters`, so one base model can hold several
                    adapters (one per task or per user) and switch between them.
    adapter config  {"method": ..., hyper-parameters}: what `record_config` keeps on the base model per name, so that
                    saving knows how to rebuild the adapter. The names of the configs and of the adapter layers
                    together are the names in use (`check_new_adapter`).
    active          which adapter an adapter layer runs: a name, None (base behaviour), or a list with one name
                    per row of the batch (a "mixed batch": a different adapter per row in one forward pass).
                    Only active adapters train (`train_active_adapters`); switching adapters switches that too.
    head            a task head (module named `head`, e.g. the classifier's). It is always trained and saved.

One name rule drives freezing and saving alike: a parameter whose name has an `adapters` component belongs to an
adapter (`is_adapter_parameter`), one under `head` to the task head (`is_head`).
"""
import re

import torch
from torch import nn

BERT_FFN_OUTPUT = r"re:.*layer\.\d+\.output\.dense"  # BERT's FFN down projection (not attention.output.dense)
BERT_ATTENTION_OUTPUT = r"re:.*attention\.output\.dense"


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

    def remove(self, name: str) -> None:
        """Delete adapter `name` from this layer (a subclass first undoes what it folded into the base)."""
        del self.adapters[name]
        if self.active == name or isinstance(self.active, list) and name in self.active:
            self.active = None

    def active_names(self) -> list[str]:
        """The adapters the current batch uses: [] (base behaviour), one name, or the names of a mixed batch."""
        if self.active is None:
            return []
        return [self.active] if isinstance(self.active, str) else sorted(set(self.active))


def names_per_row(active, batch: int) -> list:
    """The active adapter of each of `batch` rows: a name repeated, a mixed batch's list as it is, or []."""
    return [active] * batch if isinstance(active, str) else list(active or [])


# ---------------------------------------------------------------- checking arguments
def check_positive_int(value, what: str) -> None:
    """Raise ValueError unless `value` is an int ≥ 1 (True and 2.0 are refused); `what` names it in the message."""
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{what} must be a positive integer, not {value!r}")


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


def is_adapter_parameter(name: str) -> bool:
    """Whether the parameter (or module) called `name` belongs to an adapter: its name has an `adapters` part."""
    return ".adapters." in f".{name}."


def is_head(name: str) -> bool:
    """Whether the parameter called `name` belongs to a task head (a module named `head`)."""
    return name.startswith("head.") or ".head." in name


def find_modules(model: nn.Module, targets, kind=nn.Linear) -> list[tuple[str, nn.Module]]:
    """[(name, module)] of every `kind` module whose name matches a target.

    Modules already wrapped by an adapter layer count as what they wrap (a second LoRA finds `query` again).
    A target matches a module if it equals the module's last name component (`"query"`), the end of its dotted
    name (`"attention.self.query"`), or, written as `"re:<regex>"`, the whole name. Raises ValueError, listing the
    candidates, when a target matches nothing (peft's most common surprise is a silent partial match).
    """
    targets = [targets] if isinstance(targets, str) else list(targets)
    if not targets:
        raise ValueError("target_modules is empty: name at least one module, e.g. ['query', 'value']")
    named = [(n, m) for n, m in model.named_modules()
             if isinstance(unwrap(m), kind) and not n.endswith(".base") and not is_adapter_parameter(n)]

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


def wrapped(model: nn.Module, name: str, module: nn.Module, layer_class) -> AdapterLayer:
    """The `layer_class` wrapper of the submodule `name`: `module` itself if it already is one, else a new
    `layer_class(module)` put in its place. Wrapping methods (LoRA, (IA)³, bottleneck) all insert this way."""
    if isinstance(module, layer_class):
        return module
    layer = layer_class(module)
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, layer)
    return layer


def hooked_layer(module: nn.Module, attr: str, make) -> AdapterLayer:
    """`module.<attr>`: an adapter layer that rewrites the inputs of `module` in its `pre_hook(module, args,
    kwargs)`. Made with `make()` and registered as a forward pre-hook the first time (prompts, prefixes)."""
    if attr not in module._modules:
        layer = make()
        module.add_module(attr, layer)
        module.register_forward_pre_hook(layer.pre_hook, with_kwargs=True)
    return module._modules[attr]


def adapter_layers(model: nn.Module) -> list[AdapterLayer]:
    """Every adapter layer inside `model`, in module order."""
    return [m for m in model.modules() if isinstance(m, AdapterLayer)]


# ---------------------------------------------------------------- which method under which name
def configs(model: nn.Module) -> dict[str, dict]:
    """{name: {"method": ..., hyper-parameters}} of every adapter applied to `model` (a copy)."""
    return dict(getattr(pretrained_model(model), "minipeft_configs", {}))


def record_config(model: nn.Module, name: str, method: str, **hyper_parameters) -> None:
    """Called by every apply_* function last: remember how adapter `name` was made, so that it can be saved and
    rebuilt. Stored on the base model, so it travels with it (a Classifier, a deep copy)."""
    base = pretrained_model(model)
    if not hasattr(base, "minipeft_configs"):
        base.minipeft_configs = {}
    base.minipeft_configs[name] = {"method": method, **hyper_parameters}


def check_new_adapter(model: nn.Module, name: str) -> None:
    """Refuse a name already in use, by a recorded adapter config (BitFit, fine-tuning and probes insert no layer)
    or by an adapter layer. Every apply_* calls it before changing anything, so a refusal leaves the model as is."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"an adapter name must be a non-empty string, not {name!r}")
    in_use = configs(model).get(name, {}).get("method") or \
        next((type(layer).__name__ for layer in adapter_layers(model) if name in layer.adapters), None)
    if in_use:
        raise ValueError(f"an adapter named {name!r} already exists on this model ({in_use}); pass another "
                         f"name=..., or remove_adapter(model, {name!r}) first")


# ---------------------------------------------------------------- freezing
def freeze(model: nn.Module) -> None:
    """Set requires_grad=False on every parameter of `model`."""
    for p in model.parameters():
        p.requires_grad_(False)


def mark_trainable(model: nn.Module, predicate) -> int:
    """Make trainable exactly the parameters for which predicate(name, parameter) is true (plus none else);
    returns how many numbers now train."""
    count = 0
    for name, p in model.named_parameters():
        p.requires_grad_(bool(predicate(name, p)))
        count += p.numel() if p.requires_grad else 0
    return count


def train_adapters_only(model: nn.Module) -> None:
    """The PEFT rule: freeze the base model; train the task head and the active adapters (train_active_adapters)."""
    mark_trainable(model, lambda n, p: is_head(n))
    train_active_adapters(model)


def train_active_adapters(model: nn.Module) -> None:
    """Adapter parameters train exactly when their adapter is active: the one switched on, or every adapter of a
    mixed batch; the others are frozen (base and head parameters are left as they are). set_adapter applies it, so
    a model holding several adapters trains only those its batches use: PyTorch DDP refuses trainable parameters
    that get no gradient, and an optimizer would keep state for them."""
    for layer in adapter_layers(model):
        active = layer.active_names()
        for name, module in layer.adapters.items():
            module.requires_grad_(name in active)


def trains_base(model: nn.Module) -> bool:
    """Whether any parameter of the base model itself trains (fine-tuning, BitFit), not only adapters and head."""
    return any(p.requires_grad and not is_adapter_parameter(n) and not is_head(n)
               for n, p in model.named_parameters())


# ---------------------------------------------------------------- switching adapters
def adapter_names(model: nn.Module) -> list[str]:
    """Names of the adapters held by adapter layers (what set_adapter can switch between), sorted."""
    return sorted({name for layer in adapter_layers(model) for name in layer.adapters})


def set_adapter(model: nn.Module, active) -> None:
    """Activate one adapter by name, None for the plain base model, or a list of names (one per batch row).
    Only the active adapters train (train_active_adapters). Raises KeyError for a name no adapter layer holds."""
    names = adapter_names(model)
    unknown = sorted(set(names_per_row(active, 1)) - set(names))
    if unknown:
        raise KeyError(f"no adapter named {unknown} on this model; it has {names}")
    for layer in adapter_layers(model):
        layer.active = active if active is None or isinstance(active, str) else list(active)
    train_active_adapters(model)


def disable_adapters(model: nn.Module) -> None:
    """Run the plain base model (every adapter layer inactive). Methods that train base tensors are not undone."""
    set_adapter(model, None)


def remove_adapter(model: nn.Module, name: str) -> None:
    """Delete adapter `name`: its modules in every adapter layer (a merged LoRA is unmerged first) and its recorded
    config. A wrapper left holding no adapter gives its place back to the module it wrapped."""
    known = sorted(set(adapter_names(model)) | set(configs(model)))
    if name not in known:
        raise KeyError(f"no adapter named {name!r} on this model; it has {known}")
    for layer in adapter_layers(model):
        if name in layer.adapters:
            layer.remove(name)
    unwrap_empty(model)
    getattr(pretrained_model(model), "minipeft_configs", {}).pop(name, None)


def unwrap_empty(model: nn.Module) -> None:
    """Put the original module back wherever a wrapping adapter layer holds no adapter any more."""
    while True:
        empty = next((n for n, m in model.named_modules()
                      if isinstance(m, AdapterLayer) and hasattr(m, "base") and not m.adapters and n), None)
        if empty is None:
            return
        parent_name, _, child = empty.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, getattr(parent, child).base)


def record_and_activate(model: nn.Module, name: str, method: str, **hyper_parameters) -> nn.Module:
    """The last step of every apply_* that inserts adapter modules: record the config, make `name` the active
    adapter, and train only it and the head (the PEFT rule). Returns the model."""
    record_config(model, name, method, **hyper_parameters)
    set_adapter(model, name)
    train_adapters_only(model)
    return model
