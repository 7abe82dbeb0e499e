"""The README's result tables, made from the JSON files in data/results/ (never typed by hand).

    python benchmarks/report.py            print the tables (Markdown)
    python benchmarks/report.py --readme   write them into README.md between the `results` markers

tests/test_project.py checks that the README holds exactly what this prints, so the figures in the README are
always the figures in the committed JSON. Targets are judged here, met or missed, with the margin.
"""
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "data" / "results"
START, END = "<!-- results:start (benchmarks/report.py --readme writes this part) -->", "<!-- results:end -->"
# Issue #4's accuracy targets on Rotten Tomatoes: (methods that may meet it, points allowed below full
# fine-tuning, the largest share of the model that may be trainable).
ACCURACY_TARGETS = [
    ("LoRA", ["LoRA r=1", "LoRA r=8", "LoRA r=64"], 0.3, 0.5),
    ("Pfeiffer adapter", ["Pfeiffer adapters r=8", "Pfeiffer adapters r=64"], 0.3, 0.5),
    ("BitFit", ["BitFit"], 1.5, None),
    ("deep prompts", ["deep prompts k=20"], 2.0, None),
    ("prefix tuning", ["prefix tuning k=20"], 2.0, None),
]
NOTEBOOK_TOPICS = {
    "00_setup": "environment check; both models and all datasets; parameter counts by module",
    "01_adaptation_objective": "γ_adapt = argmin mean task loss; cross-entropy by hand; zero-shot prompts with "
                               "verbalizers",
    "02_probing": "linear vs MLP probes, CLS vs mean pooling, a probe on every layer",
    "03_fine_tuning": "full vs top-k vs frozen embeddings; early stopping; cost; forgetting",
    "04_prompt_tuning": "hard → soft prompts; initialisation; prompt length slider; P-tuning; deep prompts",
    "05_prefix_tuning": "K = [P_k; K], V = [P_v; V]; reparameterisation; steering generation; one prefix per user",
    "06_adapter_tuning": "a bottleneck adapter by hand; Houlsby vs Pfeiffer; add vs gate; bottleneck slider",
    "07_lora_bitfit_ia3": "LoRA by hand; rank slider; which matrices; merging; BitFit; (IA)³",
    "08_comparison": "everything side by side; per-task adapters on one base model; out-of-domain check",
}


def load(name: str) -> dict | None:
    path = RESULTS / name
    return json.loads(path.read_text()) if path.exists() else None


def compare_table(results: dict) -> list[str]:
    s = results["settings"]
    runs = {(r["label"], r["lr"], r["seed"]): r for r in results["runs"]}
    lines = [f"Rotten Tomatoes (split by movie; {s['sizes']['train']:,} training snippets, validation "
             f"{s['sizes']['validation']:,}, test {s['sizes']['test']:,}), MiniLM, mean pooling unless noted; "
             f"{s['steps']} steps of batch {s['batch_size']}, {s['max_length']} tokens, validation every "
             f"{s['eval_every']} steps with the best weights kept; learning rate chosen on validation with seed 0 "
             f"from a 2-value grid, then {s['seeds']} seeds at that rate; 2 CPU threads. "
             f"`python benchmarks/compare_methods.py`: {len(results['runs'])} runs, {hours(results):.2f} h of training "
             f"and validation (estimated {s['budget']['estimated_hours']} h for everything).", "",
             "| method | trainable | % of model | lr | test accuracy (mean ± std) | s / step | memory MB "
             "| adapter file |",
             "|---|--:|--:|--:|--:|--:|--:|--:|"]
    for row in sorted(results["summary"], key=lambda r: r["trainable_params"]):
        total = runs[(row["label"], row["lr"], 0)]["stats"]["total_params"]
        memory = sum(row["memory_mb"].values())
        lines.append(f"| {row['label']} | {row['trainable_params']:,} | {100 * row['trainable_params'] / total:.2f} "
                     f"| {row['lr']:g} | {100 * row['test_mean']:.1f} ± {100 * row['test_std']:.1f} "
                     f"| {row['seconds_per_step']:.2f} | {memory:.0f} | {size(row['adapter_bytes'])} |")
    lines += ["", "Memory is minipeft.lab.measure's account of one training step: weights + gradients + AdamW state + "
              "what autograd keeps for the backward pass. The adapter file is what `save_adapter` writes "
              "(the adapted tensors and the task head, safetensors); full fine-tuning saves the whole model."]
    return lines


def accuracy_targets(results: dict) -> list[str]:
    rows = {r["label"]: r for r in results["summary"]}
    totals = {r["label"]: r["stats"]["total_params"] for r in results["runs"]}
    full = rows.get("full fine-tuning")
    if full is None:
        return []
    lines = ["| target | best qualifying run | test accuracy | vs full fine-tuning | % trainable | met? |",
             "|---|---|--:|--:|--:|---|"]
    for name, labels, points, max_share in ACCURACY_TARGETS:
        cands = [rows[l] for l in labels if l in rows
                 and (max_share is None or 100 * rows[l]["trainable_params"] / totals[l] <= max_share)]
        if not cands:
            continue
        best = max(cands, key=lambda r: r["test_mean"])
        gap = 100 * (best["test_mean"] - full["test_mean"])
        pct = 100 * best["trainable_params"] / totals[best["label"]]
        limit = f"within {points} points" + (f", ≤ {max_share} % trainable" if max_share else "")
        verdict = "met" if gap >= -points else f"**missed** by {-gap - points:.1f} points"
        lines.append(f"| {name}: {limit} | {best['label']} | {100 * best['test_mean']:.1f} | {gap:+.1f} "
                     f"| {pct:.2f} | {verdict} |")
    return lines


def sweep_table(results: dict) -> list[str]:
    lines = ["| configuration | trainable | test accuracy (1 seed) |", "|---|--:|--:|"]
    for row in results["summary"]:
        lines.append(f"| {row['label']} | {row['trainable_params']:,} | {100 * row['test_mean']:.1f} |")
    return lines


def vs_peft_tables(results: dict) -> list[str]:
    m = results["machine"]
    lines = [f"Run {m['started_utc'][:16].replace('T', ' ')} UTC, {m['minutes']:.0f} min, load average "
             f"{m['load_average_at_start'][0]:.1f} at the start. Median of {results['settings']['steps']} steps "
             f"after {results['settings']['warmup']} warm-up steps, the two implementations alternated step by step.",
             "", "| model | method | minipeft s / step | peft s / step | ratio (target ≤ 0.95) |",
             "|---|---|--:|--:|--:|"]
    for model, methods in results["vs_peft"].items():
        for method, r in methods.items():
            lines.append(f"| {model} | {method} | {r['minipeft']['median_s']:.3f} | {r['peft']['median_s']:.3f} "
                         f"| {r['ratio']:.3f} |")
    lines += ["", "| model | LoRA s / step | full s / step | ratio (target ≤ 0.67) | memory MB LoRA / full |",
              "|---|--:|--:|--:|--:|"]
    for model, r in results["lora_vs_full"].items():
        mem = [sum(r[k]["memory_mb"].values()) for k in ("lora", "full")]
        lines.append(f"| {model} | {r['lora']['median_s']:.3f} | {r['full']['median_s']:.3f} | {r['ratio']:.3f} "
                     f"| {mem[0]:.0f} / {mem[1]:.0f} |")
    lines += ["", "| model | base forward s | merged-LoRA forward s | ratio (target ≤ 1.02) |", "|---|--:|--:|--:|"]
    for model, r in results["merged_inference"].items():
        lines.append(f"| {model} | {r['base']['median_s']:.3f} | {r['merged_lora']['median_s']:.3f} "
                     f"| {r['ratio']:.3f} |")
    met = [t for t in results["targets"] if t["met"]]
    lines += ["", f"Targets met: {len(met)} of {len(results['targets'])}. Missed: " + "; ".join(
        f"{t['target']} {t['model']} {t['method']} {t['ratio']:.3f} (limit {t['limit']})"
        for t in results["targets"] if not t["met"]) + "."]
    return lines


def profile_table(results: dict) -> list[str]:
    m, ops = results["median_s"], results["operators"]
    lines = [f"MiniLM, LoRA r = {results['settings']['lora_r']} on query, value, batch "
             f"{results['settings']['model']['batch']} × {results['settings']['model']['length']}, "
             f"median of {results['settings']['steps']} alternated steps: frozen-model floor {m['floor']:.3f} s, "
             f"minipeft {m['minipeft']:.3f} s, peft {m['peft']:.3f} s. The LoRA path and its optimizer step are "
             f"**{100 * results['lora_path_share_of_minipeft_step']:.1f} %** of minipeft's step; minipeft / peft "
             f"= {results['minipeft_over_peft']:.3f}.", "",
             "| aten op (self CPU) | minipeft ms / step | calls | peft ms / step | calls |", "|---|--:|--:|--:|--:|"]
    for op, row in list(ops["minipeft"]["ops"].items())[:8]:
        theirs = ops["peft"]["ops"].get(op, {"ms": float("nan"), "calls": "–"})
        lines.append(f"| `{op}` | {row['ms']:.1f} | {row['calls']} | {theirs['ms']:.1f} | {theirs['calls']} |")
    return lines


def notebook_table(times: dict) -> list[str]:
    """Each notebook's full-run time; a time measured while other jobs used the CPU is marked † (an upper bound)."""
    lines = ["| notebook | what it teaches | full run, 2 cores |", "|---|---|--:|"]
    busy = False
    for name, topic in NOTEBOOK_TOPICS.items():
        record = times.get(f"{name}.ipynb")
        if record is None:
            lines.append(f"| `{name}` | {topic} | not measured |")
            continue
        seconds, loaded = record["seconds"], bool(record.get("note"))  # a note says what else was running
        busy |= loaded
        shown = f"{seconds / 60:.1f} min" if seconds >= 90 else f"{seconds:.0f} s"
        lines.append(f"| `{name}` | {topic} | {shown}{' †' if loaded else ''} |")
    if busy:
        lines += ["", "† measured while other jobs were using the CPU (`data/results/notebook_times.json` says "
                  "which): an upper bound, not the time on a free laptop."]
    return lines


def hours(results: dict) -> float:
    """Training and validation time of every run (the test evaluation not included)."""
    return sum(r["history"][-1]["seconds"] for r in results["runs"] if r["history"]) / 3600


def size(n: int) -> str:
    return f"{n / 2**20:.1f} MB" if n >= 2**20 else f"{n / 1024:.0f} kB"


def report() -> str:
    parts = [START]
    compare, sweep, peft, profile, times = (load(n) for n in ("compare_methods.json", "rank_sweep.json", "vs_peft.json",
                                                               "profile_step.json", "notebook_times.json"))
    parts += ["### Notebooks", "", *notebook_table(times or {}), ""]
    if compare and compare.get("summary"):
        parts += ["### Every method on Rotten Tomatoes (`data/results/compare_methods.json`)", "",
                  *compare_table(compare), "", "![accuracy vs trainable parameters](data/results/compare_methods.png)",
                  "", "Accuracy targets:", "", *accuracy_targets(compare), ""]
    if sweep and sweep.get("summary"):
        parts += ["### Size sweeps behind the sliders (`data/results/rank_sweep.json`)", "", *sweep_table(sweep), ""]
    if peft:
        parts += ["### minipeft against Hugging Face peft (`data/results/vs_peft.json`)", "", *vs_peft_tables(peft), ""]
    if profile:
        parts += ["### Where a LoRA step's time goes (`data/results/profile_step.json`)", "",
                  *profile_table(profile), ""]
    return "\n".join(parts + [END])


def write_readme(readme: Path = ROOT / "README.md") -> None:
    text = readme.read_text()
    head, rest = text.split(START)
    _, tail = rest.split(END)
    readme.write_text(head + report() + tail)


if __name__ == "__main__":
    write_readme() if "--readme" in sys.argv else print(report())
