"""Hugging Face peft's adapter folder, both ways: `export_peft` writes what `peft.PeftModel.from_pretrained(base,
folder)` loads, `import_peft` reads a folder that peft saved (`save_pretrained`) into minipeft. peft itself is not
needed for either (the tests use it as the judge).

    folder/adapter_config.json         {"peft_type": "LORA", "task_type": ..., every hyper-parameter written out,
                                        "target_modules": ..., "base_model_name_or_path": ..., "modules_to_save": ...}
    folder/adapter_model.safetensors   tensors under peft's names, which carry no adapter name:

    minipeft parameter                              peft key                                     shape in peft
    <module>.adapters.<name>.A       (r, d_in)      base_model.model.<module>.lora_A.weight      (r, d_in)
    <module>.adapters.<name>.B       (d_out, r)     base_model.model.<module>.lora_B.weight      (d_out, r)
    <module>.adapters.<name>.magnitude (d_out,)     base_model.model.<module>.lora_magnitude_vector  (d_out,)
    <module>.adapters.<name>.vector  (out,)         base_model.model.<module>.ia3_l              (out, 1)
                                     (in,)          (modules in feedforward_modules)             (1, in)
    the prompt (prompt / P-tuning)   (k, d)         prompt_embeddings                            (k, d)
    the prefix rows [K¹ V¹ … Kᴸ Vᴸ]  (k, 2·L·d_kv)  prompt_embeddings (d_kv is peft's token_dim)  (k, 2·L·d_kv)
    head.<...> (a Classifier's head)                base_model.model.head.<...>  (modules_to_save: ["head"])

What peft can load, and as what:
    lora → LORA (rslora: use_rslora), dora → LORA with use_dora, ia3 → IA3
                                 into any model, a Classifier included (task_type null: peft wraps any nn.Module)
    prompt_tuning → PROMPT_TUNING, p_tuning → PROMPT_TUNING, prefix_tuning → PREFIX_TUNING
                                 into the transformers model itself: LlamaForCausalLM (task_type CAUSAL_LM) or a
                                 bare BertModel / LlamaModel (FEATURE_EXTRACTION). Not into a Classifier: peft's
                                 prompt learning needs a PreTrainedModel and its own forward (it fails on ours).
P-tuning goes out folded, as the k × d prompt its encoder makes, under PROMPT_TUNING: peft's P_TUNING encoder is
another network (an MLP over k × d inputs, ours takes k × h inputs), so the encoder cannot carry over, and peft uses
a P_TUNING folder's prompt as it is only in inference mode; PROMPT_TUNING uses it as it is, also when trained on.
A reparameterised prefix goes out folded too (prefix_projection false). Bottleneck adapters, BitFit, deep prompts,
fine-tuning and probes have no peft counterpart: exporting them raises. Targets: a list of names means the same in
both libraries (a module whose name is, or ends with ".", a target); a "re:<regex>" target makes the list one
full-match regex, which is what peft does with a string. Import goes the other way; a P_TUNING folder or a projected
prefix holds its folded prompt (peft saves the encoder's output), so it comes in as prompt tuning or a plain prefix.
"""
import json
import re
from pathlib import Path

from safetensors.torch import load_file, save_file

from .core import body, configs, find_modules, is_adapter_parameter, pretrained_model
from .methods.prefix_tuning import kv_sizes
from .saving import adapter_state, apply_with_tensors, unwrapped_name

CONFIG_FILE, TENSORS_FILE, PREFIX = "adapter_config.json", "adapter_model.safetensors", "base_model.model."
PEFT_TYPES = {"lora": "LORA", "dora": "LORA", "ia3": "IA3", "prompt_tuning": "PROMPT_TUNING",
              "p_tuning": "PROMPT_TUNING", "prefix_tuning": "PREFIX_TUNING"}
PROMPT_TYPES = ("PROMPT_TUNING", "P_TUNING", "PREFIX_TUNING")
SUFFIXES = {"A": ".lora_A.weight", "B": ".lora_B.weight", "magnitude": ".lora_magnitude_vector",
            "vector": ".ia3_l"}  # minipeft leaf → peft key ending
UNSUPPORTED = {"bias": "none", "lora_bias": False, "fan_in_fan_out": False,
               "layers_to_transform": None, "layers_pattern": None, "rank_pattern": {}, "alpha_pattern": {},
               "exclude_modules": None, "layer_replication": None, "trainable_token_indices": None,
               "target_parameters": None, "num_transformer_submodules": 1}  # peft options minipeft lacks: "off"


# ---------------------------------------------------------------- targets
def peft_regex(targets: list[str]) -> str:
    """minipeft targets as one full-match regex (peft's meaning of a string): a name matches itself or any dotted
    name ending in it, "re:<regex>" its regex."""
    return "|".join(f"(?:{t[3:]})" if t.startswith("re:") else rf"(?:.*\.)?{re.escape(t)}" for t in targets)


def peft_targets(targets: list[str]):
    """minipeft targets as peft's target_modules: the same list of names, or one regex if any is a "re:" target."""
    return peft_regex(targets) if any(t.startswith("re:") for t in targets) else list(targets)


def minipeft_targets(target_modules) -> list[str]:
    """peft's target_modules (a list of names, or one full-match regex string) as minipeft targets."""
    return ["re:" + target_modules] if isinstance(target_modules, str) else list(target_modules or [])


# ---------------------------------------------------------------- export
def task_type(model) -> str | None:
    """peft's task_type for `model`: CAUSAL_LM for a transformers model that generates, FEATURE_EXTRACTION for
    another transformers model (BertModel), None for any other nn.Module (a Classifier)."""
    from transformers import PreTrainedModel  # here, not on top: importing minipeft stays quick
    if not isinstance(model, PreTrainedModel):
        return None
    return "CAUSAL_LM" if model.can_generate() else "FEATURE_EXTRACTION"


def export_config(model, name: str) -> dict:
    """peft's adapter_config.json for adapter `name`, every hyper-parameter written out (peft's defaults, e.g.
    lora_alpha=8, would otherwise change the adapter silently). Raises ValueError for a method peft does not have,
    or a prompt method on a model peft cannot load one into (not a transformers model)."""
    hyper = configs(model)[name]
    method = hyper["method"]
    if method not in PEFT_TYPES:
        raise ValueError(f"adapter {name!r} is {method}, which Hugging Face peft does not have: export_peft writes "
                         f"{sorted(PEFT_TYPES)}; save it with save_adapter instead")
    peft_type, base = PEFT_TYPES[method], pretrained_model(model)
    if peft_type in PROMPT_TYPES and task_type(model) is None:
        raise ValueError(f"peft loads {method} only into a transformers model (LlamaForCausalLM: CAUSAL_LM; BertModel, "
                         f"LlamaModel: FEATURE_EXTRACTION), not into a {type(model).__name__}: apply it to the "
                         f"transformers model itself to export it, or save this one with save_adapter")
    heads = any(not is_adapter_parameter(n) for n in adapter_state(model, name))
    clashes = [n for n, _ in model.named_modules() if heads and n.endswith("head") and n != "head"]
    if clashes:  # peft picks modules_to_save by name suffix, without a dot: "head" would take them too
        raise ValueError(f"peft would also take {clashes} for the task head (its modules_to_save match by name "
                         f"suffix): build the Classifier on the transformer body (e.g. Classifier(lm.model)) to export")
    config = {"peft_type": peft_type, "task_type": task_type(model), "inference_mode": True, "revision": None,
              "base_model_name_or_path": base.config.name_or_path, "modules_to_save": ["head"] if heads else None}
    if method in ("lora", "dora"):
        return {**config, "r": hyper["r"], "lora_alpha": hyper["alpha"], "lora_dropout": hyper["dropout"],
                "target_modules": peft_targets(hyper["targets"]), "init_lora_weights": True,
                "use_rslora": hyper.get("rslora", False), "use_dora": method == "dora",
                **{option: off for option, off in UNSUPPORTED.items() if option != "num_transformer_submodules"}}
    if method == "ia3":  # regexes: peft matches a list of feed-forward names by suffix without the dot
        feedforward = hyper["feedforward"]
        return {**config, "target_modules": peft_regex(hyper["targets"] + feedforward), "fan_in_fan_out": False,
                "feedforward_modules": peft_regex(feedforward) if feedforward else [], "init_ia3_weights": True}
    layers, kv_heads, head_dim = kv_sizes(body(model).config)
    config.update(num_virtual_tokens=hyper["k"], num_layers=layers, num_transformer_submodules=1)
    if method == "prefix_tuning":  # grouped KV heads: peft's token_dim is KV heads × head_dim, as ours
        return {**config, "token_dim": kv_heads * head_dim, "num_attention_heads": kv_heads,
                "prefix_projection": False, "encoder_hidden_size": kv_heads * head_dim}
    return {**config, "token_dim": base.config.hidden_size, "num_attention_heads": base.config.num_attention_heads,
            "prompt_tuning_init": "RANDOM"}


def folded_prompt(model, name: str):
    """The (k, d) prompt of prompt tuning or P-tuning `name` (what the encoder makes), or the (k, 2·L·d_kv) rows of
    prefix `name` (what the reparameterisation makes)."""
    layers = body(model)._modules
    prefixes = layers.get("prefixes")
    if prefixes is not None and name in prefixes.adapters:
        return prefixes.adapters[name].rows()
    return layers["prompts"].adapters[name]()


def export_tensors(model, name: str) -> dict:
    """Adapter `name`'s tensors under peft's keys and in peft's shapes (see the module docstring)."""
    tensors = {}
    for param, value in adapter_state(model, name).items():
        module, found, leaf = unwrapped_name(param).partition(f".adapters.{name}.")
        if not found:  # the task head, a module peft saves whole (modules_to_save)
            tensors[PREFIX + param] = value
        elif leaf in SUFFIXES:
            if leaf == "vector":  # (IA)³: (1, in) for a scaled input, (out, 1) for a scaled output
                scales_input = model.get_submodule(param.rpartition(".")[0]).scales_input
                value = value[None] if scales_input else value[:, None]
            tensors[PREFIX + module + SUFFIXES[leaf]] = value
    if PEFT_TYPES[configs(model)[name]["method"]] in PROMPT_TYPES:
        tensors["prompt_embeddings"] = folded_prompt(model, name)
    return tensors


def export_peft(model, folder, name: str = "default") -> Path:
    """Write adapter `name` of `model` as a Hugging Face peft adapter folder (adapter_config.json and
    adapter_model.safetensors) that `peft.PeftModel.from_pretrained(base, folder)` loads, `base` being an untouched
    copy of the model (a Classifier with its head, or the transformers model). Returns the folder. Raises KeyError
    for an unknown name and ValueError for a combination peft cannot load (see the module docstring); nothing is
    written then."""
    config = export_config(model, name)
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in export_tensors(model, name).items()}
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_file(tensors, folder / TENSORS_FILE, metadata={"format": "pt"})
    (folder / CONFIG_FILE).write_text(json.dumps(config, indent=2))
    return folder


# ---------------------------------------------------------------- import
def import_config(model, config: dict, folder) -> dict:
    """minipeft's {"method": ..., hyper-parameters} for peft's adapter_config.json `config` (peft's defaults where
    it leaves one out). Raises ValueError for an unknown peft_type or a peft option minipeft does not have."""
    peft_type = config.get("peft_type")
    if peft_type not in ("LORA", "IA3", *PROMPT_TYPES):
        raise ValueError(f"{folder} holds a peft {peft_type} adapter; import_peft reads LORA, IA3, PROMPT_TUNING, "
                         f"P_TUNING and PREFIX_TUNING")
    options = [f"{option}={config[option]!r}" for option, off in UNSUPPORTED.items()
               if config.get(option) and config[option] != off]
    if options:
        raise ValueError(f"{folder} uses peft options minipeft does not have: {options}")
    if peft_type == "LORA":
        return {"method": "dora" if config.get("use_dora") else "lora",
                "targets": minipeft_targets(config["target_modules"]), "r": config.get("r", 8),
                "alpha": config.get("lora_alpha", 8), "dropout": config.get("lora_dropout", 0.0),
                "rslora": bool(config.get("use_rslora", False))}
    if peft_type == "IA3":  # minipeft's targets scale outputs only: the target modules that are not feed-forward
        feedforward = minipeft_targets(config.get("feedforward_modules"))
        inputs = {n for n, _ in find_modules(model, feedforward)} if feedforward else set()
        outputs = [n for n, _ in find_modules(model, minipeft_targets(config["target_modules"])) if n not in inputs]
        return {"method": "ia3", "targets": ["re:" + "|".join(map(re.escape, outputs))] if outputs else [],
                "feedforward": feedforward}
    k = config["num_virtual_tokens"]
    if peft_type == "PREFIX_TUNING":
        return {"method": "prefix_tuning", "k": k, "reparam_hidden": None}
    return {"method": "prompt_tuning", "k": k, "init": "random"}


def import_tensors(model, tensors: dict, hyper: dict, name: str) -> dict:
    """peft's tensors under the names of the parameters they become once `hyper` is applied as `name`, in minipeft's
    shapes. An (IA)³ vector whose orientation contradicts feedforward_modules keeps peft's shape, so it fails to fit."""
    transformer = body(model)
    path = next(n for n, m in model.named_modules() if m is transformer)
    prompt = "prefixes.adapters.{}.table" if hyper["method"] == "prefix_tuning" else "prompts.adapters.{}.weight"
    feedforward = {n for n, _ in find_modules(model, hyper["feedforward"])} if hyper.get("feedforward") else set()
    renamed = {}
    for key, value in tensors.items():
        leaf = next((leaf for leaf, suffix in SUFFIXES.items() if key.endswith(suffix)), None)
        module = key.removeprefix(PREFIX).removesuffix(SUFFIXES.get(leaf, ""))
        if key == "prompt_embeddings":
            renamed[".".join(filter(None, [path, prompt.format(name)]))] = value
        elif leaf is None:  # the task head (modules_to_save)
            renamed[module] = value
        else:
            if leaf == "vector" and value.dim() == 2 and value.shape[module not in feedforward] == 1:
                value = value.flatten()
            renamed[f"{module}.adapters.{name}.{leaf}"] = value
    return renamed


def import_peft(model, folder, name: str | None = None):
    """Load the Hugging Face peft adapter in `folder` (as peft's save_pretrained writes it) into `model` under
    `name` (default "default"): re-apply the method with the folder's hyper-parameters, then copy the tensors in.
    Raises ValueError, leaving the model unchanged, for an unknown peft_type or option, another base model
    (base_model_name_or_path against the model's name and the folder it was loaded from, by the last path
    component), or tensors that are missing, unknown or of other shapes; FileNotFoundError for a folder without
    adapter_config.json. Returns the model."""
    folder, name = Path(folder), name or "default"
    if not (folder / CONFIG_FILE).exists():
        raise FileNotFoundError(f"{folder} holds no {CONFIG_FILE}: not a peft adapter folder")
    config = json.loads((folder / CONFIG_FILE).read_text())
    base, saved = pretrained_model(model), config.get("base_model_name_or_path")
    ours = {Path(n).name for n in (base.config.name_or_path, getattr(base, "name_or_path", None)) if n}
    if saved and ours and Path(saved).name not in ours:  # the model's name, or the folder it was loaded from
        raise ValueError(f"the adapter in {folder} was trained on {saved!r}, not on this {sorted(ours)}: import it "
                         f"into the base model it was trained on")
    hyper = import_config(model, config, folder)
    tensors = import_tensors(model, load_file(folder / TENSORS_FILE), hyper, name)
    return apply_with_tensors(model, hyper, tensors, name, folder)
