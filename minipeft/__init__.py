"""minipeft: parameter-efficient fine-tuning from scratch, one method per file.

API tour (runs as written; tests/test_api_tour.py executes it; swap tiny_bert for load_encoder() for real work):

    import torch, minipeft as mp
    backbone = mp.models.tiny_bert()                               # or: backbone, tok = mp.models.load_encoder()
    model = mp.Classifier(backbone, num_labels=2, pooling="mean")  # the task head every method trains
    mp.apply_lora(model, targets=["query", "value"], r=8, alpha=16, name="sentiment")
    print(mp.count_parameters(model))                              # {'trainable': 2114, 'total': ..., 'percent': ...}
    mp.print_parameter_report(model)                               # where the trainable parameters are

    batch = {"input_ids": torch.randint(1000, 2000, (4, 12)), "labels": torch.tensor([0, 1, 1, 0])}
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    model(**batch)["loss"].backward(); opt.step()                  # one training step: only LoRA + head move

    mp.save_adapter(model, "runs/sentiment", name="sentiment")     # adapter.safetensors + adapter_config.json
    fresh = mp.Classifier(mp.models.tiny_bert(), num_labels=2, pooling="mean")
    mp.load_adapter(fresh, "runs/sentiment")                       # re-applies LoRA, copies the tensors in

    mp.apply_lora(model, targets=["query", "value"], r=4, name="nli")   # a second adapter on the same base
    mp.set_adapter(model, "sentiment")                             # switch ...
    mp.set_adapter(model, ["sentiment", "nli", "nli", "sentiment"])  # ... or one adapter per row (mixed batch)
    mp.disable_adapters(model)                                     # exactly the base model
    mp.set_adapter(model, "sentiment")
    mp.merge_lora(model, "sentiment")                              # W <- W + (alpha/r) B A: no inference overhead
    mp.unmerge_lora(model)

Methods (each `apply_*` freezes the base, inserts its modules under a name and makes them + the head trainable):
    probing.py        Classifier, apply_probe           prompt_tuning.py  apply_prompt_tuning
    finetune.py       apply_finetune (all / top-k)      p_tuning.py       apply_p_tuning, apply_deep_prompts
    bitfit.py         apply_bitfit                      prefix_tuning.py  apply_prefix_tuning, fold_prefix
    adapters.py       apply_adapters                    lora.py           apply_lora, merge_lora, unmerge_lora
    ia3.py            apply_ia3
Shared machinery: core.py (targeting, freezing, switching), params.py (counts), saving.py (safetensors),
virtual_tokens.py (the hook prompt/prefix methods share), train.py, compare.py, plots.py, models.py, data.py.
"""
from . import core, data, models, params, saving
from .adapters import apply_adapters
from .bitfit import apply_bitfit
from .core import adapter_names, disable_adapters, find_modules, freeze, remove_adapter, set_adapter
from .finetune import apply_finetune
from .ia3 import apply_ia3
from .lora import apply_lora, merge_lora, unmerge_lora
from .p_tuning import apply_deep_prompts, apply_p_tuning
from .params import count_parameters, parameter_report, print_parameter_report
from .prefix_tuning import apply_prefix_tuning, fold_prefix
from .probing import Classifier, apply_probe
from .prompt_tuning import apply_prompt_tuning
from .saving import load_adapter, save_adapter

__version__ = "0.1.0"
