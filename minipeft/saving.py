"""Save and load only what a method trained: a safetensors file (no pickle) and a small JSON config.

    path/adapter.safetensors   the adapted tensors (+ the task head), nothing of the frozen base
    path/adapter_config.json   {"adapters": {name: {"method": ..., hyper-parameters}}, "base_model": ...,
                                "base_fingerprint": ...}

Loading re-applies the method with the saved hyper-parameters, then copies the tensors in. The fingerprint
(a hash of the base model's parameter names and shapes) makes loading into a different base model fail loudly.
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
    and adapter_config.json (method, hyper-parameters, base model and its fingerprint, the task head's options).
    Returns the folder."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tensors = adapter_state(model, name)
    save_file({k: v.clone() for k, v in tensors.items()}, path / "adapter.safetensors")
    config = {"adapters": {name: configs(model)[name]}, "base_model": pretrained_model(model).config.name_or_path,
              "base_fingerprint": fingerprint(model), "task_head": getattr(model, "options", None),
              "tensors": len(tensors)}
    (path / "adapter_config.json").write_text(json.dumps(config, indent=2))
    return path


def load_adapter(model, path, name: str | None = None):
    """Re-apply the saved method to `model` (under `name`, default: the saved name) and load its tensors.

    Raises ValueError, leaving the model unchanged, when the adapter was trained on another base model, for
    another task head (other pooling, head or number of labels), or its tensors do not fit the rebuilt adapter."""
    path = Path(path)
    config = json.loads((path / "adapter_config.json").read_text())
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
    tensors = load_file(path / "adapter.safetensors")
    if name != saved_name:
        tensors = {k.replace(f".adapters.{saved_name}.", f".adapters.{name}."): v for k, v in tensors.items()}
    hyper = dict(hyper)
    apply = method(hyper.pop("method")).apply
    fresh = name not in adapter_names(model) and name not in configs(model)
    trainable = {n: p.requires_grad for n, p in model.named_parameters()}
    active = [(layer, layer.active) for layer in adapter_layers(model)]
    if fresh:
        apply(model, **hyper, name=name)
    params = dict(model.named_parameters())
    missing = sorted(set(adapter_state(model, name)) - set(tensors))
    bad = [k for k, v in tensors.items() if k not in params or params[k].shape != v.shape]
    if bad or missing:
        if fresh:  # undo the apply: the model is left as it was
            remove_adapter(model, name)
            for n, p in model.named_parameters():
                p.requires_grad_(trainable.get(n, False))
            for layer, was in active:
                layer.active = was
        raise ValueError(f"{path} does not fit this model: {(bad + missing)[:5]} are missing or have other shapes")
    with torch.no_grad():
        for k, v in tensors.items():
            params[k].copy_(v)
    return model
