"""Where a training step's time goes: why minipeft cannot be 5 % faster than peft on these models.

    python benchmarks/profile_step.py           MiniLM, batch 32 × 64 → data/results/profile_step.json
    python benchmarks/profile_step.py --quick   tiny BERT, a few steps, into a temporary folder

The vs_peft target asks minipeft's step to take ≤ 0.95 of peft's. Both run the same pretrained model; the
adapter is a thin extra path. So the question is how much of a step the adapter path could save at most.
Three steps, alternated as in vs_peft.py (same batch, same head, same seed):

    floor      the frozen model with the gradient flowing back to its input embeddings and nothing else to
               train: every matmul, attention and backward through the activations that any adapter step
               needs too, and no adapter at all
    minipeft   LoRA r = 8 on query, value (minipeft)          peft   the same with Hugging Face peft

(minipeft − floor) / minipeft is the share of a step that belongs to the LoRA path and its optimizer step: the
most any implementation of it could save. If it is under 5 %, ≤ 0.95 against peft is out of reach unless peft
wasted time in the base model, which the operator table (torch.profiler, self CPU time per aten op over a
few steps of each) shows it does not.
"""
import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import torch  # noqa: E402
import vs_peft as vp  # noqa: E402  (same models, batches, runs and alternation)
from torch.nn import functional as F  # noqa: E402


def floor_step(base, run) -> callable:
    """Forward and backward through the frozen model from input embeddings that require a gradient."""
    model = vp.copy.deepcopy(base).train().requires_grad_(False)
    batch, head = run.batch, run.head

    def step():
        embeds = model.get_input_embeddings()(batch["input_ids"]).detach().requires_grad_()
        hidden = model(inputs_embeds=embeds, attention_mask=batch["attention_mask"]).last_hidden_state
        weights = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * weights).sum(1) / weights.sum(1)
        F.cross_entropy(head(pooled), batch["classes"]).backward()
        head.zero_grad(set_to_none=True)
    return step


def operator_table(step, steps: int, top: int = 12) -> dict:
    """Self CPU milliseconds per step of the `top` most expensive aten ops, and of all ops together."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    events = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
    total = sum(e.self_cpu_time_total for e in events) / 1000 / steps
    return {"total_ms": round(total, 1), "ops": {e.key: {"ms": round(e.self_cpu_time_total / 1000 / steps, 2),
                                                        "calls": e.count // steps} for e in events[:top]}}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(1 if args.quick else 2)
    spec = (vp.QUICK_MODELS if args.quick else vp.MODELS)["minilm"]
    settings = vp.QUICK_SETTINGS if args.quick else vp.SETTINGS
    base = vp.load_base("minilm", args.quick)
    ours, theirs = vp.make_run(base, spec, "minipeft", "lora"), vp.make_run(base, spec, "peft", "lora")
    vp.copy_adapter(ours.model, theirs.model, "lora")
    steps = {"floor": floor_step(base, ours), "minipeft": ours.step, "peft": theirs.step}
    seconds = vp.alternate(steps, **settings)
    median = {name: statistics.median(s) for name, s in seconds.items()}
    tables = {name: operator_table(step, 2 if args.quick else 3) for name, step in steps.items()}
    share = (median["minipeft"] - median["floor"]) / median["minipeft"]
    results = {"settings": {**settings, "model": spec, "lora_r": vp.R, "threads": torch.get_num_threads()},
               "median_s": median, "seconds": seconds, "lora_path_share_of_minipeft_step": share,
               "minipeft_over_peft": median["minipeft"] / median["peft"], "operators": tables}
    out = (Path(tempfile.mkdtemp()) if args.quick else vp.ROOT / "data" / "results") / "profile_step.json"
    out.write_text(json.dumps(results, indent=1))
    for name, s in median.items():
        print(f"{name:<9} {s:.3f} s / step   (profiled: {tables[name]['total_ms']:.0f} ms of aten ops)")
    print(f"LoRA path and its optimizer step: {100 * share:.1f} % of minipeft's step; "
          f"minipeft / peft = {results['minipeft_over_peft']:.3f}")
    for name in ("minipeft", "peft"):
        print(f"\n{name}: top ops (ms per step, calls per step)")
        for op, row in tables[name]["ops"].items():
            print(f"  {op:<40} {row['ms']:>8.1f} {row['calls']:>6}")
    print(f"\nwrote {out}")
    return results


if __name__ == "__main__":
    main()
