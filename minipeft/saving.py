"""Save and load only what a method trained: a safetensors file (no pickle) and a small JSON config.

    path/adapter.safetensors    the adapted tensors (+ the task head), nothing of the frozen base
    path/minipeft_adapter.json  {"adapters": {name: {"method": ..., hyper-parameters}}, "base_model": ...,
                                 "base_fingerprint": ...}

Loading re-applies the method with the saved hyper-parameters, then copies the tensors in. The fingerprint
(a hash of the base model's parameter names and shapes) makes loading into a different base model fail loudly.
The config is not called adapter_config.json: that is Hugging Face peft's file, which peft and transformers look for
in any adapter folder (peft_format.py writes and reads that format). Folders saved before the rename hold minipeft's
config under that name; load_adapter still reads them.
"""
import hashlib
import json
import re
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from .core import (adapter_layers, adapter_names, configs, is_adapter_parameter, is_head, pretrained_model,
                   remove_adapter)
from .methods import method

TENSORS_FILE, CONFIG_FILE = "adapter.safetensors", "minipeft_adapter.json"
OLD_CONFIG_FILE = "adapter_config.json"  # minipeft's config before issue 11, and the name of peft's config


def unwrapped_name(name: str) -> str:
    """A parameter's name as it was before adapter layers wrapped its module (a wrapper keeps it as `.base`)."""
    return re.sub(r"(\.base)+\.", ".", name)


def fingerprint(model) -> str:
    """sha256 of the frozen base model's parameter names and shapes (adapters and heads left out). Names are
    taken as before any wrapping (`query.base.weight` counts as `query.weight`), so a model that already holds
    an adapter has the fingerprint of its plain base."""
    base = pretrained_model(model)
    items = [f"{unwrapped_name(n)}:{tuple(p.shape)}" for n, p in base.named_parameters()
             if not is_adapter_parameter(n)]
    return hashlib.sha256("\n".join(sorted(items)).encode()).hexdigest()[:16]


def adapter_state(model, name: str = "default") -> dict[str, torch.Tensor]:
    """The tensors that belong to adapter `name`: its adapter parameters, the task head, and for methods that
    train base parameters (BitFit, fine-tuning) the parameters that require gradients. KeyError for an unknown name."""
    if name not in configs(model):
        raise KeyError(f"no adapter named {name!r} was applied to this model; it has {sorted(configs(model))}")
    trains_base = method(configs(model)[name]["method"]).trains_base
    return {n: p.detach().contiguous() for n, p in model.named_parameters()
            if f".adapters.{name}." in f".{n}" or is_head(n) or (trains_base and p.requires_grad)}


def save_adapter(model, path, name: str = "default") -> Path:
    """Write adapter `name` of `model` to the folder `path`: adapter.safetensors (its tensors and the task head)
    and minipeft_adapter.json (method, hyper-parameters, base model and its fingerprint, the task head's options).
    Returns the folder. Raises KeyError for a name no method was applied under."""
    path = Path(path)
    tensors = adapter_state(model, name)
    path.mkdir(parents=True, exist_ok=True)
    save_file({k: v.clone() for k, v in tensors.items()}, path / TENSORS_FILE)
    config = {"adapters": {name: configs(model)[name]}, "base_model": pretrained_model(model).config.name_or_path,
              "base_fingerprint": fingerprint(model), "task_head": getattr(model, "options", None),
              "tensors": len(tensors)}
    (path / CONFIG_FILE).write_text(json.dumps(config, indent=2))
    return path


def read_config(path: Path) -> dict:
    """The minipeft config of the adapter folder `path` (from minipeft_adapter.json, or from adapter_config.json in
    a folder saved before the rename). Raises ValueError for a Hugging Face peft folder (it says to use
    import_peft) and FileNotFoundError for a folder that holds neither."""
    for file in (CONFIG_FILE, OLD_CONFIG_FILE):
        config = json.loads((path / file).read_text()) if (path / file).exists() else {}
        if "adapters" in config:
            return config
    if (path / OLD_CONFIG_FILE).exists():
        raise ValueError(f"{path} holds a Hugging Face peft adapter, not a minipeft one: load it with "
                         f"minipeft.import_peft(model, {str(path)!r})")
    raise FileNotFoundError(f"{path} holds no {CONFIG_FILE}: write an adapter there with save_adapter first")


def load_adapter(model, path, name: str | None = None):
    """Re-apply the saved method to `model` (under `name`, default: the saved name) and load its tensors.

    Raises ValueError, leaving the model unchanged, when the adapter was trained on another base model, for
    another task head (other pooling, head or number of labels), or its tensors do not fit the rebuilt adapter."""
    path = Path(path)
    config = read_config(path)
    if config["base_fingerprint"] != fingerprint(model):
        raise ValueError(f"the adapter in {path} was trained on {config['base_model']!r} (fingerprint "
                         f"{config['base_fingerprint']}), not on this {pretrained_model(model).config.name_or_path!r} "
                         f"(fingerprint {fingerprint(model)}): load it into the base model it was trained on")
    head = config.get("task_head")
    if head is not None and head != getattr(model, "options", None):
        raise ValueError(f"the adapter in {path} was trained with the task head {head}, not with this model's "
                         f"{getattr(model, 'options', None)}: build Classifier(backbone, **{head}) to load it into")
    (saved_name, hyper), = config["adapters"].items()
    name = name or saved_name
    tensors = load_file(path / TENSORS_FILE)
    if name != saved_name:
        tensors = {k.replace(f".adapters.{saved_name}.", f".adapters.{name}."): v for k, v in tensors.items()}
    return apply_with_tensors(model, hyper, tensors, name, path)


def apply_with_tensors(model, hyper: dict, tensors: dict, name: str, source):
    """Apply method hyper["method"] with the other hyper-parameters under `name` (unless the model already holds
    that adapter, e.g. a checkpoint of the run), then copy `tensors`, named as the model's parameters, in. Names
    are compared as before any wrapping (unwrapped_name), so it does not matter which of two adapters on one module
    wrapped the other. Raises ValueError, naming `source` (where the tensors come from), when some of the adapter's
    tensors are missing, or tensors are unknown (not the adapter's: no base weight is overwritten) or of another
    shape; an adapter applied here is then removed again, so the model is left as it was. Returns the model."""
    tensors = {unwrapped_name(k): v for k, v in tensors.items()}
    hyper = dict(hyper)
    apply = method(hyper.pop("method")).apply
    fresh = name not in adapter_names(model) and name not in configs(model)
    trainable = {n: p.requires_grad for n, p in model.named_parameters()}
    active = [(layer, layer.active) for layer in adapter_layers(model)]
    if fresh:
        apply(model, **hyper, name=name)
    params = {unwrapped_name(n): p for n, p in model.named_parameters()}
    state = {unwrapped_name(n) for n in adapter_state(model, name)}
    problems = {"missing": sorted(state - set(tensors)), "unknown": sorted(set(tensors) - state),
                "of another shape": sorted(k for k, v in tensors.items() if k in state and params[k].shape != v.shape)}
    if any(problems.values()):
        if fresh:  # undo the apply: the model is left as it was
            remove_adapter(model, name)
            for n, p in model.named_parameters():
                p.requires_grad_(trainable.get(n, False))
            for layer, was in active:
                layer.active = was
        raise ValueError(f"{source} does not fit this model: " + "; ".join(
            f"{what}: {names[:5]}" for what, names in problems.items() if names))
    with torch.no_grad():
        for k, v in tensors.items():
            params[k].copy_(v)
    return model
