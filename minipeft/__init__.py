"""minipeft: parameter-efficient fine-tuning from scratch, one method per file.

    minipeft/            the library: core.py (adapter layers, targeting, freezing, switching), params.py (counts),
                         saving.py (safetensors), peft_format.py (Hugging Face peft's adapter folders, both ways),
                         train.py (the training loop), trainer.py (transformers.Trainer with adapters)
    minipeft/methods/    one file per method, each with its formula, a picture and the paper; the registry
    minipeft/lab/        the course's kit: models, datasets, the comparison harness, measurements, plots, widgets.
                         It uses the library; the library never imports it (`mp.lab` loads it on first use).

API tour (runs as written; tests/test_api_tour.py executes it; swap tiny_bert() for load_encoder() for real work):

    import torch, minipeft as mp
    backbone = mp.lab.tiny_bert()                                  # or: backbone, tok = mp.lab.load_encoder()
    model = mp.Classifier(backbone, num_labels=2, pooling="mean")  # the task head every method trains
    mp.apply_lora(model, targets=["query", "value"], r=8, alpha=16, name="sentiment")
    print(mp.count_parameters(model))                              # {'trainable': 2114, 'total': ..., 'percent': ...}
    mp.print_parameter_report(model)                               # where the trainable parameters are

    batch = {"input_ids": torch.randint(1000, 2000, (4, 12)), "labels": torch.tensor([0, 1, 1, 0])}
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    model(**batch)["loss"].backward(); opt.step()                  # one training step: only LoRA + head move

    mp.save_adapter(model, "runs/sentiment", name="sentiment")     # adapter.safetensors + minipeft_adapter.json
    fresh = mp.Classifier(mp.lab.tiny_bert(), num_labels=2, pooling="mean")
    mp.load_adapter(fresh, "runs/sentiment")                       # re-applies LoRA, copies the tensors in

    mp.apply_lora(model, targets=["query", "value"], r=4, name="nli")   # a second adapter on the same base
    mp.set_adapter(model, "sentiment")                             # switch ...
    mp.set_adapter(model, ["sentiment", "nli", "nli", "sentiment"])  # ... or one adapter per row (mixed batch)
    mp.disable_adapters(model)                                     # exactly the base model
    mp.set_adapter(model, "sentiment")
    mp.merge_lora(model, "sentiment")                              # W <- W + (alpha/r) B A: no inference overhead
    mp.unmerge_lora(model)

Every `apply_*` checks its arguments, finds its target modules, inserts its modules under a name, then records the
config and makes only them and the head trainable (core.record_and_activate). `mp.METHODS` is the registry.
"""
import importlib

from . import core, params, peft_format, saving, train
from .core import adapter_names, disable_adapters, find_modules, freeze, remove_adapter, set_adapter
from .methods import (METHODS, Classifier, apply_bitfit, apply_bottleneck, apply_deep_prompts, apply_dora,
                      apply_finetune, apply_ia3, apply_lora, apply_p_tuning, apply_prefix_tuning, apply_probe,
                      apply_prompt_tuning, apply_qlora, entity_f1, fold_prefix, merge_lora, predict_tags,
                      quantize_from_gguf, unmerge_lora)
from .methods import TokenClassifier
from .params import count_parameters, parameter_report, print_parameter_report
from .peft_format import export_peft, import_peft
from .saving import load_adapter, save_adapter

__version__ = "0.1.0"


def __getattr__(name: str):
    """`mp.lab` (the course's kit) loads on first use: importing minipeft loads no lab code."""
    if name == "lab":
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'minipeft' has no attribute {name!r}")
