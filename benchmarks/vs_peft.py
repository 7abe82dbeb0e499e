"""minipeft against Hugging Face peft: seconds per training step; LoRA against full fine-tuning; merged LoRA.

    python benchmarks/vs_peft.py            the full run (about 15 min on 2 busy cores) → data/results/vs_peft.json
    python benchmarks/vs_peft.py --quick    tiny random models, a few steps, into a temporary folder (smoke test)

Same work on both sides. Each method is applied to two copies of the same base model, once by minipeft and once
by peft, and minipeft's initial adapter weights are copied into peft's (the start is checked: same loss). Same
trainable parameters (checked: same count), same loss, same optimizer (AdamW, lr 1e-3), models in train mode.
    MiniLM   batch 32 × 64 tokens (right-padded rows of 32..64 real tokens); the body's last hidden states of the
             real tokens, mean-pooled → a linear head (trained, the same initial weights on both sides) →
             cross-entropy: what minipeft's Classifier does.
    SmolLM2  batch 8 × 64 tokens; the model's own next-token loss (`labels=`; padding labelled -100).
Methods: LoRA (query,value / q_proj,v_proj; r = 8, α = 16), prompt tuning (k = 20), prefix tuning (k = 20, no
reparameterisation), (IA)³ (the default targets: keys, values, feed-forward down projection).

How it is timed. A step = forward + backward + optimizer.step + zero_grad. The implementations ALTERNATE step by
step in one process (the order swapped every step), so whatever else the machine runs slows both alike; the
first 3 steps of each warm up and are dropped, the median of the next 20 is reported. Read the ratios: absolute
seconds depend on the machine's load (`machine` in the JSON says what it was).

    targets                                                    ratio
    minipeft step / peft step, every method and model          ≤ 0.95
    LoRA step / full fine-tuning step (minipeft, alternated)   ≤ 0.67
    merged-LoRA forward / base-model forward (no_grad)         ≤ 1.02

Memory: minipeft.lab.measure's accounting (weights + gradients + AdamW state + what autograd saves in one forward),
and ru_maxrss of a fresh process per configuration (in one process the high-water mark only ever goes up).
Each stage (one model × one method, or the merged-LoRA timing) runs in a fresh process: see in_fresh_process.
"""
import argparse
import copy
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Idle OpenMP threads sleep instead of spinning. On a busy machine (another job on the same 2 cores) spinning
# threads steal the CPU from the one doing the work: a MiniLM step measured 4× slower with 2 threads than with 1.
OMP_WAIT_POLICY = os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE") if "torch" not in sys.modules else \
    "unknown: torch was loaded before this script set it"  # OpenMP reads it when torch loads it

import peft  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402

from minipeft.core import body  # noqa: E402
from minipeft.lab import models  # noqa: E402
from minipeft.lab.measure import memory_mb, saved_activations  # noqa: E402
from minipeft.methods.finetune import apply_finetune  # noqa: E402
from minipeft.methods.ia3 import apply_ia3  # noqa: E402
from minipeft.methods.lora import LoRALinear, apply_lora, merge_lora  # noqa: E402
from minipeft.methods.prefix_tuning import apply_prefix_tuning  # noqa: E402
from minipeft.methods.prompt_tuning import apply_prompt_tuning  # noqa: E402

METHODS = ("lora", "prompt_tuning", "prefix_tuning", "ia3")
K, R, ALPHA, LR = 20, 8, 16, 1e-3
MODELS = {  # name -> family, batch size, tokens per row
    "minilm": {"family": "bert", "model": models.ENCODER_NAME, "batch": 32, "length": 64},
    "smollm2": {"family": "llama", "model": models.CAUSAL_LM_NAME, "batch": 8, "length": 64},
}
QUICK_MODELS = {"minilm": {"family": "bert", "model": "tiny_bert", "batch": 4, "length": 16},
                "smollm2": {"family": "llama", "model": "tiny_llama", "batch": 2, "length": 16}}
LORA_TARGETS = {"bert": ["query", "value"], "llama": ["q_proj", "v_proj"]}
IA3_PEFT_TARGETS = {  # peft wants the feed-forward modules among its targets; its regexes match whole names
    "bert": (r".*\.(key|value)|.*layer\.\d+\.output\.dense", r".*layer\.\d+\.output\.dense"),
    "llama": (["k_proj", "v_proj", "down_proj"], ["down_proj"]),
}
TARGETS = {"minipeft/peft": 0.95, "lora/full": 0.67, "merged/base": 1.02}
SETTINGS = {"warmup": 3, "steps": 20}
QUICK_SETTINGS = {"warmup": 1, "steps": 3}


# ---------------------------------------------------------------- models, batches, methods
def load_base(name: str, quick: bool) -> nn.Module:
    if quick:
        return models.tiny_bert() if name == "minilm" else models.tiny_llama()
    # CPU timings by design (the course's laptop; on a GPU, timing asynchronous kernels would need synchronising)
    return (models.load_encoder(device="cpu") if name == "minilm" else models.load_causal_lm(device="cpu"))[0]


def make_batch(config, spec: dict, seed: int = 0) -> dict:
    """Random tokens, rows of length/2 .. length real tokens (the first row full), right-padded."""
    g = torch.Generator().manual_seed(seed)
    n, length = spec["batch"], spec["length"]
    ids = torch.randint(1000, config.vocab_size, (n, length), generator=g)
    real = torch.randint(length // 2, length + 1, (n,), generator=g)
    real[0] = length
    mask = (torch.arange(length) < real[:, None]).long()
    ids = ids.masked_fill(mask == 0, config.pad_token_id or 0)
    if spec["family"] == "llama":
        return {"input_ids": ids, "attention_mask": mask, "labels": ids.masked_fill(mask == 0, -100)}
    return {"input_ids": ids, "attention_mask": mask, "classes": torch.randint(0, 2, (n,), generator=g)}


def apply_minipeft(model, method: str, family: str):
    if method == "lora":
        return apply_lora(model, LORA_TARGETS[family], r=R, alpha=ALPHA)
    if method == "prompt_tuning":
        return apply_prompt_tuning(model, k=K)
    if method == "prefix_tuning":
        return apply_prefix_tuning(model, k=K)
    return apply_ia3(model)


def apply_peft(model, method: str, family: str):
    task = "FEATURE_EXTRACTION" if family == "bert" else "CAUSAL_LM"
    if method == "lora":
        config = peft.LoraConfig(task_type=task, r=R, lora_alpha=ALPHA, lora_dropout=0.0,
                                 target_modules=LORA_TARGETS[family])
    elif method == "prompt_tuning":
        config = peft.PromptTuningConfig(task_type=task, num_virtual_tokens=K)
    elif method == "prefix_tuning":
        config = peft.PrefixTuningConfig(task_type=task, num_virtual_tokens=K, prefix_projection=False)
    else:
        targets, feedforward = IA3_PEFT_TARGETS[family]
        config = peft.IA3Config(task_type=task, target_modules=targets, feedforward_modules=feedforward)
    return peft.get_peft_model(model, config)


@torch.no_grad()
def copy_adapter(ours, theirs, method: str) -> None:
    """minipeft's initial adapter weights into peft's model, so both start from the same point."""
    if method in ("prompt_tuning", "prefix_tuning"):
        layer = body(ours).prompts if method == "prompt_tuning" else body(ours).prefixes
        adapter = layer.adapters["default"]
        source = adapter.weight if method == "prompt_tuning" else adapter.table
        theirs.prompt_encoder["default"].embedding.weight.copy_(source)
        return
    for name, module in theirs.named_modules():
        mine = name.removeprefix("base_model.model.")
        if method == "lora" and "default" in getattr(module, "lora_A", {}):
            module.lora_A["default"].weight.copy_(ours.get_submodule(mine).adapters["default"].A)
            module.lora_B["default"].weight.copy_(ours.get_submodule(mine).adapters["default"].B)
        if method == "ia3" and "default" in getattr(module, "ia3_l", {}):
            vector = module.ia3_l["default"]
            vector.copy_(ours.get_submodule(mine).adapters["default"].vector.view_as(vector))


# ---------------------------------------------------------------- a training run and its step
class Run:
    """A model (plus, for the encoder, a linear head) trained on one fixed batch with AdamW."""

    def __init__(self, model, batch: dict, head: nn.Module | None = None):
        self.model, self.batch, self.head = model, batch, head
        self.modules = nn.ModuleDict({"model": model, **({"head": head} if head is not None else {})})
        self.modules.train()
        self.trainable = [p for p in self.modules.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(self.trainable, lr=LR)

    def loss(self) -> torch.Tensor:
        if self.head is None:  # causal LM: the model's own next-token loss
            return self.model(**self.batch).loss
        mask = self.batch["attention_mask"]
        hidden = self.model(input_ids=self.batch["input_ids"], attention_mask=mask).last_hidden_state
        hidden = hidden[:, -mask.shape[1]:]  # the real tokens (prompt tuning puts k virtual ones in front)
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * weights).sum(1) / weights.sum(1)
        return F.cross_entropy(self.head(pooled), self.batch["classes"])

    def step(self) -> None:
        self.loss().backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    @torch.no_grad()
    def eval_loss(self) -> float:
        """The loss without dropout (to check that two runs compute the same function)."""
        self.modules.eval()
        try:
            return self.loss().item()
        finally:
            self.modules.train()

    def memory(self) -> dict:
        """minipeft.lab.measure's accounting, in MB: weights, gradients, optimizer state, saved activations."""
        with saved_activations(self.modules) as saved:
            self.loss()
        return {k: round(v, 2) for k, v in memory_mb(self.modules, sum(saved.values())).items()}

    def trainable_params(self) -> int:
        return sum(p.numel() for p in self.trainable)


def make_run(base, spec: dict, kind: str, method: str | None = None, batch=None) -> Run:
    """kind: "minipeft" or "peft" (with a method), or "full" (full fine-tuning). Works on a copy of `base`."""
    model = copy.deepcopy(base)
    if kind == "minipeft":
        apply_minipeft(model, method, spec["family"])
    elif kind == "peft":
        model = apply_peft(model, method, spec["family"])
    else:
        apply_finetune(model)
    torch.manual_seed(1)  # the same head on every run of a model
    head = nn.Linear(base.config.hidden_size, 2) if spec["family"] == "bert" else None
    return Run(model, batch if batch is not None else make_batch(base.config, spec), head)


# ---------------------------------------------------------------- timing
def alternate(calls: dict, warmup: int, steps: int) -> dict:
    """{name: [seconds of each timed call]}: the calls take turns, the order rotating every round."""
    names, seconds = list(calls), {name: [] for name in calls}
    for i in range(warmup + steps):
        for name in names[i % len(names):] + names[:i % len(names)]:
            tick = time.perf_counter()
            calls[name]()
            if i >= warmup:
                seconds[name].append(time.perf_counter() - tick)
    return seconds


def timing(seconds: list) -> dict:
    return {"median_s": statistics.median(seconds), "seconds": [round(s, 5) for s in seconds]}


def vs_peft(base, spec: dict, method: str, settings: dict, with_full: bool = False) -> dict:
    """minipeft against peft on one method; with_full adds full fine-tuning to the rotation (LoRA / full)."""
    ours, theirs = make_run(base, spec, "minipeft", method), make_run(base, spec, "peft", method)
    copy_adapter(ours.model, theirs.model, method)
    if ours.trainable_params() != theirs.trainable_params():
        raise RuntimeError(f"{method}: minipeft trains {ours.trainable_params()} parameters, peft "
                           f"{theirs.trainable_params()}: not the same work")
    start = {"minipeft": ours.eval_loss(), "peft": theirs.eval_loss()}
    if abs(start["minipeft"] - start["peft"]) > 1e-4 * max(1.0, abs(start["peft"])):  # float rounding passes
        raise RuntimeError(f"{method}: the two start from different losses {start}: not the same function")
    runs = {"minipeft": ours, "peft": theirs, **({"full": make_run(base, spec, "full")} if with_full else {})}
    seconds = alternate({name: run.step for name, run in runs.items()}, **settings)
    result = {name: {**timing(seconds[name]), "trainable_params": run.trainable_params(), "memory_mb": run.memory(),
                     **({"start_loss": start[name]} if name in start else {})} for name, run in runs.items()}
    return {**result, "ratio": result["minipeft"]["median_s"] / result["peft"]["median_s"]}


def lora_vs_full(rotation: dict) -> dict:
    """LoRA (minipeft) against full fine-tuning, from the LoRA rotation of vs_peft(..., with_full=True)."""
    lora, full = rotation["minipeft"], rotation.pop("full")
    return {"lora": dict(lora), "full": full, "ratio": lora["median_s"] / full["median_s"]}


def merged_inference(base, spec: dict, settings: dict) -> dict:
    """LoRA with a non-zero update merged into the weights, against the base model: forward only, no_grad."""
    batch = {k: v for k, v in make_batch(base.config, spec).items() if k in ("input_ids", "attention_mask")}
    plain, merged = copy.deepcopy(base).eval(), apply_lora(copy.deepcopy(base), LORA_TARGETS[spec["family"]], r=R,
                                                           alpha=ALPHA).eval()
    torch.manual_seed(2)
    with torch.no_grad():
        for layer in merged.modules():
            if isinstance(layer, LoRALinear):
                layer.adapters["default"].B.normal_(std=0.02)  # a trained-looking update, so merging changes W
        output = (lambda m: m(**batch)[0])  # last_hidden_state / logits
        unmerged = output(merged)
        merge_lora(merged)
        difference = (output(merged) - unmerged).abs().max().item()
        change = (output(merged) - output(plain)).abs().max().item()
    seconds = alternate({"base": torch.no_grad()(lambda: output(plain)),
                         "merged_lora": torch.no_grad()(lambda: output(merged))}, **settings)
    result = {name: timing(seconds[name]) for name in seconds}
    return {**result, "ratio": result["merged_lora"]["median_s"] / result["base"]["median_s"],
            "max_abs_diff_merged_vs_unmerged": difference, "max_abs_diff_merged_vs_base": change}


# ---------------------------------------------------------------- fresh processes
def stage(name: str, what: str, quick: bool) -> dict:
    """One part of the benchmark on one model: a method against peft (`what` = a method), or "merged"."""
    torch.set_num_threads(1 if quick else 2)  # tiny models: threads would only add overhead
    spec, settings = (QUICK_MODELS if quick else MODELS)[name], QUICK_SETTINGS if quick else SETTINGS
    base = load_base(name, quick)
    if what == "merged":
        return merged_inference(base, spec, settings)
    return vs_peft(base, spec, what, settings, with_full=what == "lora")


def rss_child(name: str, kind: str, quick: bool) -> dict:
    """Load, build the run, 2 steps; ru_maxrss (MB) after building and after the steps."""
    torch.set_num_threads(1 if quick else 2)
    specs = QUICK_MODELS if quick else MODELS
    run = make_run(load_base(name, quick), specs[name], "minipeft" if kind == "lora" else "full", "lora")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    for _ in range(2):
        run.step()
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"after_setup_mb": round(before, 1), "after_2_steps_mb": round(after, 1),
            "training_increase_mb": round(after - before, 1)}


def in_fresh_process(option: str, name: str, what: str, quick: bool) -> dict:
    """Run `stage` (--stage) or `rss_child` (--rss-child) in a new Python process and read back its JSON.
    Why: CPU memory freed by PyTorch mostly stays with the process (the allocator keeps it, fragmented), so
    one process running every stage grew past 13 GB and was killed; a process per stage starts clean."""
    command = [sys.executable, __file__, option, name, what] + (["--quick"] if quick else [])
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command[1:])} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------- report
def target_rows(results: dict) -> list:
    rows = []
    for model, methods in results["vs_peft"].items():
        rows += [("minipeft/peft", model, method, r["ratio"]) for method, r in methods.items()]
    rows += [("lora/full", model, "lora", r["ratio"]) for model, r in results["lora_vs_full"].items()]
    rows += [("merged/base", model, "lora", r["ratio"]) for model, r in results["merged_inference"].items()]
    # "met" is judged on the ratio as written, so that the JSON never contradicts itself at a limit's edge
    return [{"target": t, "model": m, "method": method, "ratio": round(ratio, 4), "limit": TARGETS[t],
             "met": round(ratio, 4) <= TARGETS[t]} for t, m, method, ratio in rows]


def print_report(results: dict) -> None:
    print(f"\n{'model':<8} {'method':<14} {'minipeft s':>10} {'peft s':>8} {'ratio':>6}")
    for model, methods in results["vs_peft"].items():
        for method, r in methods.items():
            print(f"{model:<8} {method:<14} {r['minipeft']['median_s']:>10.3f} {r['peft']['median_s']:>8.3f} "
                  f"{r['ratio']:>6.3f}")
    print(f"\n{'model':<8} {'LoRA s':>8} {'full s':>8} {'ratio':>6}  memory MB LoRA / full (measure.py)   peak RSS MB")
    for model, r in results["lora_vs_full"].items():
        mem = {k: sum(r[k]["memory_mb"].values()) for k in ("lora", "full")}
        rss = {k: r[k].get("peak_rss", {}).get("after_2_steps_mb", float("nan")) for k in ("lora", "full")}
        print(f"{model:<8} {r['lora']['median_s']:>8.3f} {r['full']['median_s']:>8.3f} {r['ratio']:>6.3f}  "
              f"{mem['lora']:>10.0f} / {mem['full']:<10.0f}               {rss['lora']:.0f} / {rss['full']:.0f}")
    print(f"\n{'model':<8} {'base s':>8} {'merged s':>9} {'ratio':>6}")
    for model, r in results["merged_inference"].items():
        print(f"{model:<8} {r['base']['median_s']:>8.3f} {r['merged_lora']['median_s']:>9.3f} {r['ratio']:>6.3f}")
    print("\ntargets")
    for row in results["targets"]:
        print(f"  {row['target']:<14} {row['model']:<8} {row['method']:<14} {row['ratio']:.3f} ≤ {row['limit']}  "
              f"{'met' if row['met'] else 'MISSED'}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny random models, a few steps (a smoke test)")
    parser.add_argument("--out", type=Path, help="JSON file (default: data/results/vs_peft.json)")
    parser.add_argument("--note", default="", help="what else the machine was doing, stored in the JSON")
    parser.add_argument("--stage", nargs=2, metavar=("MODEL", "WHAT"), help=argparse.SUPPRESS)
    parser.add_argument("--rss-child", nargs=2, metavar=("MODEL", "KIND"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.stage or args.rss_child:  # a child process: print the result as the last line of JSON
        print(json.dumps(stage(*args.stage, args.quick) if args.stage else rss_child(*args.rss_child, args.quick)))
        return None
    torch.set_num_threads(1 if args.quick else 2)
    specs, settings = (QUICK_MODELS, QUICK_SETTINGS) if args.quick else (MODELS, SETTINGS)
    out = args.out or (Path(tempfile.mkdtemp()) / "vs_peft.json" if args.quick
                       else ROOT / "data" / "results" / "vs_peft.json")
    started = time.perf_counter()
    results = {"settings": {**settings, "models": specs, "methods": list(METHODS), "k": K, "lora_r": R,
                            "lora_alpha": ALPHA, "lr": LR, "optimizer": "AdamW", "quick": args.quick,
                            "torch_threads": torch.get_num_threads(),
                            "OMP_WAIT_POLICY": OMP_WAIT_POLICY, "torch": torch.__version__,
                            "transformers": transformers.__version__, "peft": peft.__version__},
               "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                           "started_utc": datetime.now(UTC).isoformat(timespec="seconds"),
                           "load_average_at_start": os.getloadavg(), "note": args.note},
               "vs_peft": {}, "lora_vs_full": {}, "merged_inference": {}}
    loads = results["machine"]["load_average_by_section"] = {}  # 1, 5, 15-minute load averages when it started
    # Each stage in a fresh process (see in_fresh_process); the tiny models of --quick need none.
    run_stage = (lambda name, what: stage(name, what, True)) if args.quick else \
        (lambda name, what: in_fresh_process("--stage", name, what, False))
    for name in specs:
        results["vs_peft"][name] = {}
        for method in METHODS:
            print(f"{name} {method}: minipeft and peft{' and full fine-tuning' * (method == 'lora')} "
                  f"alternating ...", flush=True)
            loads[f"{name} {method}"] = os.getloadavg()
            results["vs_peft"][name][method] = run_stage(name, method)
        results["lora_vs_full"][name] = lora_vs_full(results["vs_peft"][name]["lora"])
        for kind in ("lora", "full"):
            results["lora_vs_full"][name][kind]["peak_rss"] = in_fresh_process("--rss-child", name, kind, args.quick)
        print(f"{name}: merged LoRA and base model alternating (forward only) ...", flush=True)
        loads[f"{name} merged"] = os.getloadavg()
        results["merged_inference"][name] = run_stage(name, "merged")
    results["targets"] = target_rows(results)
    minutes = round((time.perf_counter() - started) / 60, 1)
    results["machine"].update(load_average_at_end=os.getloadavg(), minutes=minutes)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    print_report(results)
    print(f"\nwrote {out} in {results['machine']['minutes']} min")
    return results


if __name__ == "__main__":
    main()
