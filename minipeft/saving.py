"""Save and load only what a method trained: a safetensors file (no pickle) and a small JSON config.

    path/adapter.safetensors   the adapted tensors (+ the task head), nothing of the frozen base
    path/adapter_config.json   {"adapters": {name: {"method": ..., hyper-parameters}}, "base_model": ...,
                                "base_fingerprint": ...}

Loading re-applies the method with the saved hyper-parameters, then copies the tensors in. The fingerprint
(a hash of the base model's parameter names and shapes) makes loading into a different base model fail loudly.
"""
import hashlib
import importlib
import json
import re
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from .core import adapter_names, is_head, pretrained_model

# method name -> (module, apply function). Each apply function takes (model, **hyper_parameters, name=...).
METHODS = {
    "lora": ("minipeft.lora", "apply_lora"),
    "ia3": ("minipeft.ia3", "apply_ia3"),
    "adapter": ("minipeft.adapters", "apply_adapters"),
    "prompt_tuning": ("minipeft.prompt_tuning", "apply_prompt_tuning"),
    "p_tuning": ("minipeft.p_tuning", "apply_p_tuning"),
    "deep_prompt": ("minipeft.p_tuning", "apply_deep_prompts"),
    "prefix_tuning": ("minipeft.prefix_tuning", "apply_prefix_tuning"),
    "bitfit": ("minipeft.bitfit", "apply_bitfit"),
    "finetune": ("minipeft.finetune", "apply_finetune"),
}
TRAINS_BASE = {"bitfit", "finetune"}  # methods that train some of the base model's own parameters


def record_config(model, name: str, method: str, **hyper_parameters) -> None:
    """Called by every apply_* function, so that save_adapter knows how to rebuild the adapter."""
    base = pretrained_model(model)
    if not hasattr(base, "minipeft_configs"):
        base.minipeft_configs = {}
    base.minipeft_configs[name] = {"method": method, **hyper_parameters}


def configs(model) -> dict:
    return dict(getattr(pretrained_model(model), "minipeft_configs", {}))


def unwrapped_name(name: str) -> str:
    """A parameter's name as it was before adapter layers wrapped its module (a wrapper keeps it as `.base`)."""
    return re.sub(r"(\.base)+\.", ".", name)


def fingerprint(model) -> str:
    """sha256 of the frozen base model's parameter names and shapes (adapters and heads left out). Names are
    taken as before any wrapping (`query.base.weight` counts as `query.weight`), so a model that already holds
    an adapter has the fingerprint of its plain base."""
    base = pretrained_model(model)
    items = [f"{unwrapped_name(n)}:{tuple(p.shape)}" for n, p in base.named_parameters()
             if ".adapters." not in f".{n}"]
    return hashlib.sha256("\n".join(sorted(items)).encode()).hexdigest()[:16]


def adapter_state(model, name: str = "default") -> dict:
    """The tensors that belong to adapter `name`: its adapter parameters, the task head, and for methods that
    train base parameters (BitFit, fine-tuning) the parameters that require gradients."""
    method = configs(model).get(name, {}).get("method")
    if method is None:
        raise KeyError(f"no adapter named {name!r} was applied to this model; it has {sorted(configs(model))}")
    return {n: p.detach().contiguous() for n, p in model.named_parameters()
            if f".adapters.{name}." in f".{n}" or is_head(n) or (method in TRAINS_BASE and p.requires_grad)}


def save_adapter(model, path, name: str = "default") -> Path:
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tensors = adapter_state(model, name)
    save_file({k: v.clone() for k, v in tensors.items()}, path / "adapter.safetensors")
    config = {"adapters": {name: configs(model)[name]}, "base_model": pretrained_model(model).config.name_or_path,
              "base_fingerprint": fingerprint(model), "tensors": len(tensors)}
    (path / "adapter_config.json").write_text(json.dumps(config, indent=2))
    return path


def load_adapter(model, path, name: str | None = None):
    """Re-apply the saved method to `model` (under `name`, default: the saved name) and load its tensors."""
    path = Path(path)
    config = json.loads((path / "adapter_config.json").read_text())
    if config["base_fingerprint"] != fingerprint(model):
        raise ValueError(f"the adapter in {path} was trained on {config['base_model']!r} (fingerprint "
                         f"{config['base_fingerprint']}), not on this {pretrained_model(model).config.name_or_path!r} "
                         f"(fingerprint {fingerprint(model)}): load it into the base model it was trained on")
    (saved_name, hyper), = config["adapters"].items()
    name = name or saved_name
    tensors = load_file(path / "adapter.safetensors")
    if name != saved_name:
        tensors = {k.replace(f".adapters.{saved_name}.", f".adapters.{name}."): v for k, v in tensors.items()}
    hyper = dict(hyper)
    module, function = METHODS[hyper.pop("method")]
    if name not in adapter_names(model) and name not in configs(model):
        getattr(importlib.import_module(module), function)(model, **hyper, name=name)
    params = dict(model.named_parameters())
    bad = [k for k, v in tensors.items() if k not in params or params[k].shape != v.shape]
    if bad:
        raise ValueError(f"{path} does not fit this model: {bad[:5]} are missing or have other shapes")
    with torch.no_grad():
        for k, v in tensors.items():
            params[k].copy_(v)
    return model
