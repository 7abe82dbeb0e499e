"""One file per adaptation method, and the one registry of them.

    file               method                                             apply function(s)
    probing.py         Classifier (the task head) and probing             Classifier, apply_probe
    finetune.py        full fine-tuning, top-k layers, frozen embeddings  apply_finetune
    bitfit.py          BitFit: biases only                                apply_bitfit
    prompt_tuning.py   prompt tuning: k vectors before the input          apply_prompt_tuning
    p_tuning.py        P-tuning (prompt encoder), deep prompts            apply_p_tuning, apply_deep_prompts
    prefix_tuning.py   prefix tuning: k keys/values at every layer        apply_prefix_tuning, fold_prefix
    bottleneck.py      bottleneck adapters (Houlsby, Pfeiffer)            apply_bottleneck
    lora.py            LoRA (and rsLoRA, LoRA+), merge / unmerge          apply_lora, merge_lora, unmerge_lora
    dora.py            DoRA: LoRA + a learned magnitude per output row    apply_dora
    qlora.py           QLoRA: LoRA on a base kept as Q4_1 blocks (GGUF)   quantize_from_gguf, apply_qlora
    ia3.py             (IA)³: learned rescaling vectors                   apply_ia3
    virtual_tokens.py  the hook prompt and prefix methods share           -
    tagging.py         TokenClassifier (a tag per word), entity F1        TokenClassifier, entity_f1, predict_tags

Every apply function takes (model, **hyper_parameters, name=...) and records {"method": <key below>, ...} on the
model (core.record_config), which is how saving.load_adapter finds the function to rebuild an adapter with.
QLoRA has no entry of its own: it quantizes the base, then applies (and records) a plain LoRA adapter.
"""
from collections.abc import Callable
from typing import NamedTuple

from .bitfit import apply_bitfit
from .bottleneck import apply_bottleneck
from .dora import apply_dora
from .finetune import apply_finetune
from .ia3 import apply_ia3
from .lora import apply_lora, merge_lora, unmerge_lora
from .p_tuning import apply_deep_prompts, apply_p_tuning
from .prefix_tuning import apply_prefix_tuning, fold_prefix
from .probing import Classifier, apply_probe
from .prompt_tuning import apply_prompt_tuning
from .qlora import apply_qlora, quantize_from_gguf
from .tagging import TokenClassifier, entity_f1, predict_tags


class Method(NamedTuple):
    """A registry entry: the apply function, and whether the method trains tensors of the base model itself
    (then saving stores the base tensors that require grad, not only the adapter's modules and the head)."""
    apply: Callable
    trains_base: bool = False


METHODS: dict[str, Method] = {
    "probe": Method(apply_probe),
    "finetune": Method(apply_finetune, trains_base=True),
    "bitfit": Method(apply_bitfit, trains_base=True),
    "prompt_tuning": Method(apply_prompt_tuning),
    "p_tuning": Method(apply_p_tuning),
    "deep_prompt": Method(apply_deep_prompts),
    "prefix_tuning": Method(apply_prefix_tuning),
    "bottleneck": Method(apply_bottleneck),
    "lora": Method(apply_lora),
    "dora": Method(apply_dora),
    "ia3": Method(apply_ia3),
}


def method(name: str) -> Method:
    """The registry entry of method `name`; KeyError lists the known names."""
    if name not in METHODS:
        raise KeyError(f"unknown method {name!r}; known: {sorted(METHODS)}")
    return METHODS[name]


__all__ = ["METHODS", "Method", "method", "Classifier", "apply_probe", "apply_finetune", "apply_bitfit",
           "apply_prompt_tuning", "apply_p_tuning", "apply_deep_prompts", "apply_prefix_tuning", "fold_prefix",
           "apply_bottleneck", "apply_lora", "apply_dora", "merge_lora", "unmerge_lora", "apply_ia3", "apply_qlora",
           "quantize_from_gguf", "TokenClassifier", "entity_f1", "predict_tags"]
