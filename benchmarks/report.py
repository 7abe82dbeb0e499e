"""The README's result tables, made from the JSON files in data/results/ (never typed by hand).

    python benchmarks/report.py            print the tables (Markdown)
    python benchmarks/report.py --readme   write them into README.md between the `results` markers

tests/test_project.py checks that the README holds exactly what this prints, so the figures in the README are
always the figures in the committed JSON. Targets are judged here, met or missed, with the margin.
"""
import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "data" / "results"
START, END = "<!-- results:start (benchmarks/report.py --readme writes this part) -->", "<!-- results:end -->"
# The accuracy targets on Rotten Tomatoes (issues #4 and #9): (methods that may meet it, points allowed below full
# fine-tuning, the largest share of the model that may be trainable). Judged on the paired 95 % interval.
ACCURACY_TARGETS = [
    ("LoRA", ["LoRA r=1", "LoRA r=8", "LoRA r=8 (all linear layers)", "LoRA r=64"], 0.3, 0.5),
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
    "08_comparison": "everything side by side; per-task adapters on one base model; out of domain and perturbed, "
                     "against full fine-tuning",
    "09_token_tasks": "POS probes per layer with control tasks (selectivity); token classification; NER entity F1: "
                      "probe vs LoRA vs full fine-tuning",
    "10_lora_successors": "DoRA by hand (direction + length); rsLoRA's α/√r measured over ranks; LoRA+ parameter "
                          "groups; QLoRA on the Q4_1 file, NF4 by hand; the unified view (prefix = gated adapter)",
    "11_small_data_and_expressivity": "learning curves by hand (5 draws per size); augmentation measured, paired; "
                                      "the benchmark's curves for 7 methods; the same methods on random weights",
}


def load(name: str) -> dict | None:
    path = RESULTS / name
    return json.loads(path.read_text()) if path.exists() else None


def compare_summary(results: dict) -> list[dict]:
    """The summary rows (one per method, "seeds": how many final runs it has so far): as the benchmark writes them,
    or, for a file without them, computed from its runs."""
    if results.get("summary"):
        return results["summary"]
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import compare_methods as cm
    from minipeft.lab.compare import summarize
    done = {run["key"]: run for run in results["runs"]}
    return summarize(cm.METHODS, done, results["settings"]["seeds"], results["settings"]["reference"])


def points(x: float) -> str:
    return f"{100 * x:+.1f}"


def compare_table(results: dict) -> list[str]:
    s, rows = results["settings"], compare_summary(results)
    costs = results.get("costs", {}).get("methods", {})
    reference_cost = costs.get(s["reference"], {}).get("seconds_per_step")
    finals = [r for r in results["runs"] if r["phase"] == "final"]
    searches = [r for r in results["runs"] if r["phase"] == "search"]
    complete = all(r["complete"] for r in rows) and bool(costs)  # summarize writes a row for every method
    status = "" if complete else (
        f"**Partial results: the benchmark has not finished (running it again resumes).** {len(searches)} search "
        f"runs and {len(finals)} of {len(rows) * s['seeds']} final runs are in; test columns show a method once it "
        f"has a final run, with the number of seeds it has (—: none yet). ")
    s_train, s_val, s_test = (f"{s['sizes'][k]:,}" for k in ("train", "validation", "test"))
    lines = [status + f"Rotten Tomatoes (split by movie: {s_train} training, {s_val} validation, {s_test} test "
             f"snippets), MiniLM, mean pooling unless noted, batch {s['batch_size']}, snippets cut at "
             f"{s['max_length']} tokens, {s['precision']} precision (bf16 autocast: the CPU and the GPU have bf16 "
             f"units), length-grouped "
             f"batches. Learning rate: searched per method on validation with seed 0, {s['search']['epochs']} epoch "
             f"per rate, 4 rates a factor √10 apart and more beyond an end of the grid until the best is inside. "
             f"Final runs: {s['seeds']} seeds at the chosen rate, up to {s['final']['epochs']} epochs, validation "
             f"every {s['final']['eval_every']} steps (4 times an epoch), the best weights kept, stopped after "
             f"{s['final']['patience']} validations without improvement. Δ is the paired difference to "
             f"{s['reference']} on the same {s_test} test snippets with its 95 % bootstrap interval (over snippets "
             f"and seeds). {len(results['runs'])} runs: {where_trained(results)}.", "",
             "| method | trainable | % of model | lr (rates tried) | search: validation after 1 epoch "
             "| test accuracy, mean ± std (seeds) | Δ vs full fine-tuning [95 % CI] | best epoch | s / step ÷ full "
             "| memory MB | adapter file |",
             "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"]
    trainable = {label: c["trainable_params"] for label, c in costs.items()}
    trainable |= {r["label"]: r["stats"]["trainable_params"] for r in results["runs"]}  # searches count them too
    for row in sorted(rows, key=lambda r: trainable.get(r["label"], 0)):
        gap = row.get("vs_reference")
        delta = f"{points(gap['difference'])} [{points(gap['low'])}, {points(gap['high'])}]" if gap else "—"
        cost = costs.get(row["label"])
        time = f"{cost['seconds_per_step'] / reference_cost:.2f}" if cost and reference_cost else "—"
        memory = f"{sum(cost['memory_mb'].values()):.0f}" if cost else "—"
        file = size(cost["adapter_bytes"]) if cost else "—"
        if not row["search"]:  # a method added to a running comparison: its costs may be in, its runs not yet
            count = f"{trainable[row['label']]:,}" if row["label"] in trainable else "—"
            lines.append(f"| {row['label']} | {count} | — | not searched yet | — | — | — | — | {time} | {memory} "
                         f"| {file} |")
            continue
        edge = " (at the edge)" if row["at_edge"] else ""
        searched = dict(row["search"]).get(row["lr"])
        share = 100 * trainable[row["label"]] / next(r["stats"]["total_params"] for r in results["runs"]
                                                     if r["label"] == row["label"])
        test, epochs = "—", "—"
        if row["seeds"]:
            spread = f" ± {100 * row['test_std']:.1f}" if row["seeds"] > 1 else ""  # no spread from one seed
            test = f"{100 * row['test_mean']:.1f}{spread} ({row['seeds']})"
            epochs = f"{sum(row['best_epoch']) / len(row['best_epoch']):.1f}"
        lines.append(f"| {row['label']} | {trainable[row['label']]:,} | {share:.2f} | {row['lr']:g} "
                     f"({len(row['search'])}){edge} | {100 * searched:.1f} | {test} | {delta} | {epochs} | {time} "
                     f"| {memory} | {file} |")
    check = device_check(results)
    if check:
        lines += ["", *check]
    if costs:
        c = results["costs"]
        lines += ["", f"Seconds per step: every method in turns over the same {c['batches']} training batches "
                  f"({c['tokens_per_batch']:.0f} tokens on average), measured side by side in one process "
                  f"(load average {c['load_average_before']:.1f} before, {c['load_average_after']:.1f} after); "
                  f"{s['reference']} took {reference_cost:.3f} s. Memory is minipeft.lab.measure's account of one "
                  f"training step (weights + gradients + AdamW state + what autograd keeps for the backward pass, "
                  f"bf16 autocast). The adapter file is what `save_adapter` writes (the adapted tensors and the task "
                  f"head); full fine-tuning saves the whole model."]
    return lines


def verdict(gap: dict, margin: float) -> str:
    """met: the whole 95 % interval lies above −margin; not met: all of it below; else cannot tell."""
    if gap["low"] >= -margin / 100:
        return "met"
    if gap["high"] < -margin / 100:
        return f"**not met** (by {-100 * gap['difference'] - margin:.1f} points)"
    return "cannot tell at this test size"


def accuracy_targets(results: dict) -> list[str]:
    rows = {r["label"]: r for r in compare_summary(results)}
    lines = ["| target | method | test accuracy | Δ vs full fine-tuning [95 % CI] | % trainable | verdict |",
             "|---|---|--:|--:|--:|---|"]
    for name, labels, margin, max_share in ACCURACY_TARGETS:
        for label in labels:
            row = rows.get(label)
            if row is None or "vs_reference" not in row:
                continue
            share = 100 * row["trainable_params"] / row["total_params"]
            if max_share is not None and share > max_share:
                continue
            gap = row["vs_reference"]
            limit = f"within {margin} points" + (f", ≤ {max_share} % trainable" if max_share else "")
            lines.append(f"| {name}: {limit} | {label} | {100 * row['test_mean']:.1f} | {points(gap['difference'])} "
                         f"[{points(gap['low'])}, {points(gap['high'])}] | {share:.2f} | {verdict(gap, margin)} |")
    return lines


def sweep_table(results: dict) -> list[str]:
    lines = ["| configuration | trainable | test accuracy (1 seed) |", "|---|--:|--:|"]
    for row in results["summary"]:
        lines.append(f"| {row['label']} | {row['trainable_params']:,} | {100 * row['test_mean']:.1f} |")
    return lines


def rslora_table(results: dict) -> list[str]:
    """Test accuracy and update size per rank, LoRA's α/r against rsLoRA's α/√r (one learning rate)."""
    rows, size = {r["label"]: r for r in results["summary"]}, results.get("update_size", {})
    ranks = sorted({int(label.rsplit("=", 1)[1]) for label in rows})
    seeds = sorted({r["seeds"] for r in results["summary"]})
    partial = not all(r["complete"] for r in results["summary"])
    anchor = results.get("anchor")
    lines = [f"LoRA on query, value at one learning rate ({results['summary'][0]['lr']:g}, compare_methods.py's choice "
             f"for LoRA r = 8), α = 16 for α/r and α = 2√8 for α/√r (both scale 2 at r = 8); seeds per configuration "
             f"{'/'.join(map(str, seeds))} of {results['settings']['seeds']} planned; update = ‖s·BA‖/‖W‖ on layer 0's "
             f"query after {size.get('steps', '?')} steps." + (" **Partial: not every run is in.**" if partial else ""),
             "", "| rank | trainable | scale α/r | test α/r | update α/r | scale α/√r | test α/√r | update α/√r |",
             "|--:|--:|--:|--:|--:|--:|--:|--:|"]
    for r in sorted(ranks + ([8] if anchor else [])):
        if r == 8 and anchor:
            test = f"{100 * anchor['test']:.1f} ({anchor['seeds']} seed{'s' if anchor['seeds'] > 1 else ''})"
            lines.append(f"| 8 | (LoRA r=8) | 2 | {test} | | 2 | the same run | |")
            continue
        plain, rs = rows.get(f"LoRA α/r r={r}"), rows.get(f"rsLoRA α/√r r={r}")
        cells = []
        for row, scale in ((plain, 16 / r), (rs, 2 * (8 / r) ** 0.5)):
            test = f"{100 * row['test_mean']:.1f}" if row and row["seeds"] else "not yet"
            grow = size.get("relative", {}).get(row["label"]) if row else None
            cells += [f"{scale:.3g}", test, f"{grow:.2e}" if grow is not None else ""]
        trainable = (plain or rs)["trainable_params"]
        lines.append(f"| {r} | {f'{trainable:,}' if trainable else ''} | " + " | ".join(cells) + " |")
    return lines


def robustness_table(results: dict) -> list[str]:
    """Accuracy on the IMDB sample and on the perturbed test copies, as changes from the test split."""
    from minipeft.lab.robustness import robustness
    rows = robustness(results)
    names = list(results.get("extra_tests", {}))
    if not rows or not names:
        return []
    summary = compare_summary(results)
    planned, seeds = len(summary), results["settings"]["seeds"]
    complete = len(rows) == planned and all(len(row["seeds"]) == seeds for row in rows)
    status = (f"All {planned} methods, {seeds} seeds each." if complete else
              f"**Partial: {len(rows)} of {planned} methods have final runs that predicted these sets** (runs made "
              f"before 2026-12-04 have none).")
    lines = [f"{status} Test accuracy, then each set's accuracy change from it in points with a 95 % bootstrap "
             f"interval: paired over the same 1,265 snippets for the perturbed copies, two independent samples for "
             f"IMDB (200 reviews cut at {results['extra_tests'][names[0]]['max_length']} tokens). MiniLM's "
             f"tokenizer lower-cases its input, so the lower-case column must read 0.0: a check of the harness.", "",
             "| method | seeds | test | " + " | ".join(names) + " |", "|---|--:|--:|" + "--:|" * len(names)]
    for row in rows:
        cells = [f"{100 * e['accuracy']:.1f} ({points(e['change'])} [{points(e['low'])}, {points(e['high'])}])"
                 for e in (row["extra"][n] for n in names)]
        lines.append(f"| {row['label']} | {','.join(map(str, row['seeds']))} | {100 * row['test']:.1f} | "
                     + " | ".join(cells) + " |")
    reference = results["settings"]["reference"]
    if any(row["label"] == reference for row in rows):
        lines += ["", *robustness_versus_table(results, [row["label"] for row in rows], reference, names)]
    return lines


def robustness_versus_table(results: dict, labels: list[str], reference: str, names: list[str]) -> list[str]:
    """Each method's change on each extra set minus the reference's change, with paired intervals."""
    from minipeft.lab.robustness import change_versus
    names = [n for n in names if n != "lowercase"]  # 0.0 for every method (the tokenizer lower-cases)
    lines = [f"Does a method keep more of its accuracy than {reference}? Its change minus {reference}'s change, "
             f"in points, 95 % bootstrap interval (the same examples for both methods, seeds resampled per "
             f"method; positive: it loses less). A difference whose interval excludes 0 is in bold.", "",
             "| method | " + " | ".join(names) + " |", "|---|" + "--:|" * len(names)]
    for label in labels:
        if label == reference:
            continue
        cells = []
        for name in names:
            d = change_versus(results, label, reference, name)
            cell = f"{points(d['difference'])} [{points(d['low'])}, {points(d['high'])}]"
            cells.append(f"**{cell}**" if d["low"] > 0 or d["high"] < 0 else cell)
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def token_tasks_tables(results: dict) -> list[str]:
    """Probe selectivity by layer (mean over seeds) and NER entity F1 by method with intervals."""
    pr, st = results["probes"], results["settings"]
    runs = [r for r in pr["runs"] if not r.get("width_sweep")]
    lines = [f"MiniLM on the CoNLL-2003 sample: part-of-speech probes on every layer ({pr['test_words']:,} test "
             f"words), "
             f"seeds {', '.join(map(str, st['seeds']))} (probe initialisation and control-task draw), mean over "
             f"seeds; selectivity = task − control accuracy (Hewitt & Liang 2019).", "",
             "| layer | linear: task | linear: control | linear: selectivity | MLP (64): task | MLP (64): control "
             "| MLP (64): selectivity |", "|--:|--:|--:|--:|--:|--:|--:|"]
    for layer in range(pr["layers"]):
        cells = []
        for probe in ("linear", "MLP (64)"):
            rows = [r for r in runs if r["probe"] == probe and r["layer"] == layer]
            task, control = (100 * statistics.fmean(r[k] for r in rows) for k in ("task", "control"))
            cells += [f"{task:.1f}", f"{control:.1f}", f"{task - control:.1f}"]
        lines.append(f"| {layer} | " + " | ".join(cells) + " |")
    ner = results.get("ner_summary")
    if ner:
        lines += ["", f"NER, entity F1 on the test split ({st['test_sentences']} sentences, {st['test_entities']} "
                  f"entities), {st['ner_epochs']} epochs, learning rate searched on validation, seeds "
                  f"{', '.join(map(str, st['seeds']))}; 95 % bootstrap intervals over sentences and seeds:", "",
                  "| method | trainable | lr | F1 per seed | mean F1 [95 % CI] |", "|---|--:|--:|--:|--:|"]
        for name, row in ner["methods"].items():
            lo, hi = row["interval"]
            lines.append(f"| {name} | {row['trainable']:,} | {row['lr']:g} | "
                         f"{', '.join(f'{100 * f:.1f}' for f in row['f1'])} | {100 * row['mean']:.1f} "
                         f"[{100 * lo:.1f}, {100 * hi:.1f}] |")
        lines += ["", "| paired difference | F1 points [95 % CI] |", "|---|--:|"]
        lines += [f"| {pair} | {points(d['difference'])} [{points(d['interval'][0])}, {points(d['interval'][1])}] |"
                  for pair, d in ner["paired"].items()]
    return lines


def expressivity_table(results: dict, compared: dict) -> list[str]:
    """Each method on random weights against the same configuration on pretrained MiniLM (compare_methods.json)."""
    pretrained = {row["label"]: row for row in compare_summary(compared)} if compared else {}
    partial = not all(row["complete"] for row in results["summary"])
    lines = [("**Partial: not every run is in.** " if partial else "") +
             "The comparison's protocol (search, up to 4 epochs, early stopping) on a MiniLM of the same shape with "
             "random weights (one seed), against the same configuration on the pretrained MiniLM:", "",
             "| method | pretrained: test (seeds) | random weights: test | lr (random) |", "|---|--:|--:|--:|"]
    for row in results["summary"]:
        label = row["label"].removesuffix(" (random weights)")
        other = pretrained.get(label)
        before = f"{100 * other['test_mean']:.1f} ({other['seeds']})" if other and other["seeds"] else "—"
        after = f"{100 * row['test_mean']:.1f}" if row["seeds"] else "—"
        lines.append(f"| {label} | {before} | {after} | {row['lr'] if row['lr'] is not None else '—'} |")
    return lines


def small_data_table(results: dict, compared: dict | None) -> list[str]:
    """Test accuracy by number of labelled snippets: mean ± std over the draws in (of those planned), and the whole
    training split from compare_methods.json (3 seeds)."""
    planned = results["planned"]
    sizes = [int(n) for n in planned["draws"]]
    whole = {row["label"]: row for row in compare_summary(compared)} if compared else {}
    rows = {(row["label"], row["n"]): row for row in results["rows"] if row["augmentation"] is None}
    finished = [n for n in sizes if all((label, n) in rows and len(rows[label, n]["test"]) == planned["draws"][str(n)]
                                        for label in planned["methods"])]
    lines = [] if results["complete"] else [
        f"**Partial: {results['cells_done']} of {planned['cells']} cells (size × draw × augmentation) are "
        f"complete**; a cell shows its draws so far (of those planned). "
        + (f"Sizes with every draw in for every method: {', '.join(f'{n:,}' for n in finished)}; the other columns "
           f"are not final results yet." if finished else "Nothing here is a final result yet."), ""]
    lines += ["Test accuracy (%) on the whole test split, mean ± std over draws of the labelled data (each draw: n "
              "training and n validation snippets, the learning rate searched on those n); the last column is the "
              "comparison's whole training split (3 seeds):", "",
              "| method | " + " | ".join(f"{n:,}" for n in sizes) + " | all |", "|---|" + "--:|" * (len(sizes) + 1)]
    for label in planned["methods"]:
        cells = []
        for n in sizes:
            row = rows.get((label, n))
            drawn = f" ({len(row['test'])}/{planned['draws'][str(n)]})" if row and not results["complete"] else ""
            spread = f" ± {100 * row['std']:.1f}" if row and len(row["test"]) > 1 else ""  # no std from one draw
            cells.append(f"{100 * row['mean']:.1f}{spread}{drawn}" if row else "—")
        full = whole.get(label)
        cells.append(f"{100 * full['test_mean']:.1f} ± {100 * full['test_std']:.1f}" if full and full["seeds"] > 1
                     else "—")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def paired_cell(row: dict | None, planned: int, complete: bool) -> str:
    """A paired difference over draws in points: "+2.0 [-10.7, +14.7]" (its 95 % t interval; none from one draw),
    with "(draws in/planned)" while the benchmark is partial; "—" for none."""
    if row is None:
        return "—"
    interval = f" [{100 * row['interval'][0]:+.1f}, {100 * row['interval'][1]:+.1f}]" if row["interval"] else ""
    return f"{100 * row['mean']:+.1f}{interval}" + ("" if complete else f" ({len(row['gains'])}/{planned})")


def versus_reference_table(results: dict) -> list[str]:
    """Each method minus full fine-tuning, in points, by number of labelled snippets: on the same draws, mean over
    draws with its 95 % t interval over draws."""
    planned, reference = results["planned"], results.get("reference")
    differences = {(r["label"], r["n"]): r for r in results.get("vs_reference", [])}
    if not differences:
        return []
    sizes = [int(n) for n in planned["draws"]]
    lines = [f"Which method with few labels: each method minus {reference} on the same draws (the same training, "
             f"validation and test rows), test accuracy in points, mean over draws [95 % t interval over draws]; an "
             f"interval that holds 0 is no difference this benchmark can resolve:", "",
             "| method | " + " | ".join(f"{n:,}" for n in sizes) + " |", "|---|" + "--:|" * len(sizes)]
    for label in planned["methods"]:
        if label != reference:
            cells = [paired_cell(differences.get((label, n)), planned["draws"][str(n)], results["complete"])
                     for n in sizes]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def augmentation_table(results: dict) -> list[str]:
    """Augmented minus plain test accuracy, in points, by method, augmentation and size: mean over the draws that
    have both, with its 95 % t interval over draws (draws in so far, of those planned, while partial)."""
    planned = results["planned"]
    effects = {(r["label"], r["augmentation"], r["n"]): r for r in results.get("augmentation", [])}
    if not effects:
        return []
    sizes = planned["augment_sizes"]
    lines = ["Augmentation: each training snippet plus one changed copy, the same number of steps, the learning rate "
             "chosen without augmentation on the same draw. Augmented minus plain test accuracy (points), mean over "
             "draws [95 % t interval over draws]:", "",
             "| method | augmentation | " + " | ".join(f"{n:,} snippets" for n in sizes) + " |",
             "|---|---|" + "--:|" * len(sizes)]
    for label in planned["methods"]:
        for augmentation in planned["augmentations"]:
            cells = [paired_cell(effects.get((label, augmentation, n)), planned["draws"][str(n)], results["complete"])
                     for n in sizes]
            lines.append(f"| {label} | {augmentation} | " + " | ".join(cells) + " |")
    return lines


def convergence_table(results: dict) -> list[str]:
    """Validation accuracy by epoch of the convergence runs, and where each peaked."""
    s = results["settings"]
    precision = {run["stats"].get("precision") for run in results["runs"]}
    lines = [f"One seed each, the whole training split, a linear schedule over {s['final']['epochs']} epochs, "
             f"validation on the whole validation split 4 times an epoch (in the training precision: "
             f"{', '.join(sorted(map(str, precision)))}), minipeft's defaults otherwise. Each epoch's column is the "
             f"validation nearest the end of that epoch.", "",
             "| method (lr) | " + " | ".join(f"epoch {e}" for e in range(1, s["final"]["epochs"] + 1))
             + " | best (epoch) |", "|---|" + "--:|" * (s["final"]["epochs"] + 1)]
    for run in results["runs"]:
        cells = []
        for e in range(1, s["final"]["epochs"] + 1):  # validation runs every eval_every steps: not exactly at e
            nearest = min(run["history"], key=lambda h: abs(h["epoch"] - e))
            cells.append(f"{100 * nearest['metric']:.1f}" if abs(nearest["epoch"] - e) < 0.125 else "—")
        best = run["stats"]["best_step"] / run["stats"]["steps_per_epoch"]
        lines.append(f"| {run['label']} ({run['lr']:g}) | " + " | ".join(cells)
                     + f" | {100 * run['validation']:.1f} ({best:.2f}) |")
    return lines


def speedups_tables(results: dict) -> list[str]:
    """The levers' step times side by side, and the accuracy cost of each default (paired differences)."""
    t = results["timing"]
    lines = [f"Seconds per training step, MiniLM, batch 32, in turns over the same 8 batches per set-up "
             f"({t['rounds']} rounds, the first a warm-up; load average {t['load_average_before']:.1f} before, "
             f"{t['load_average_after']:.1f} after):", "",
             "| method | set-up | tokens per batch | s / step | speed-up |", "|---|---|--:|--:|--:|"]
    for name, row in t["rows"].items():
        lines.append(f"| {name} | {row['tokens_per_batch']:.0f} | {row['seconds_per_step']:.3f} "  # "method | set-up"
                     f"| × {row['speedup_vs_plain']:.2f} |")
    gaps = results.get("differences", {})
    if gaps:
        lines += ["", f"What each default costs in test accuracy: the run with one default switched back minus the run "
                  f"with all of them, paired over the same test snippets and the seeds each has (of "
                  f"{results['settings']['seeds']} planned; compare_methods.py's budget and learning rates; every run, "
                  f"the defaults' too, on the CPU):", "",
                  "| switched back | Δ test accuracy [95 % CI] | seeds (switched / default) |", "|---|--:|--:|"]
        lines += [f"| {name} | {points(g['difference'])} [{points(g['low'])}, {points(g['high'])}] "
                  f"| {g['seeds']} / {g['reference_seeds']} |" for name, g in gaps.items()]
        missing = [m for m in results.get("planned", []) if m not in gaps]
        short = any(g["seeds"] < results["settings"]["seeds"] for g in gaps.values())
        notes = ([f"not measured yet: {'; '.join(missing)}"] if missing else []) + (
            ["fewer seeds than planned where the table says so"] if short else [])
        if notes:
            lines += ["", "**Partial:** " + "; ".join(notes) + "."]
    else:
        lines += ["", "**Not measured yet:** what each default costs in test accuracy (the comparison's final runs "
                  "with one default switched back, 3 seeds each: `python benchmarks/speedups.py` without "
                  "`--timing-only`, after compare_methods.py)."]
    return lines


def time_to_accuracy_table(results: dict) -> list[str]:
    s, reach, m = results["settings"], results["seconds_to_target"], results["matmul"]
    return [f"LoRA r = {s['r']}, α = {s['alpha']}, lr {s['lr']:g}, batch {s['batch_size']}, {s['epochs']} epochs of "
            f"{s['sizes']['train']:,} snippets, validation 4 times an epoch; training time without evaluation "
            f"(load average {results['load_average_before']:.1f} at the start).", "",
            "| | minipeft (its defaults) | peft + Trainer (Trainer's defaults) |", "|---|--:|--:|",
            f"| best validation accuracy | {100 * results['final_best']['minipeft']:.1f} "
            f"| {100 * results['final_best']['peft_trainer']:.1f} |",
            f"| seconds to {100 * results['target_accuracy']:.1f} % validation accuracy | {reach['minipeft']:.0f} "
            f"| {reach['peft_trainer']:.0f} |",
            f"| training seconds, all {s['epochs']} epochs | {results['training_seconds']['minipeft']:.0f} "
            f"| {results['training_seconds']['peft_trainer']:.0f} |", "",
            f"minipeft / peft + Trainer time to the same accuracy: **{results['ratio']:.2f}** (target ≤ 0.5: "
            f"{'met' if results['ratio'] <= 0.5 else 'missed'}). One LoRA step ({m['tokens_per_batch']} tokens "
            f"per row, {m['precision']}) does {m['step_flops'] / 1e9:.0f} GFLOP in {m['step_seconds']:.3f} s: "
            f"{m['achieved_flops_per_second'] / 1e9:.0f} GFLOP/s, {100 * m['share_of_peak']:.0f} % of the "
            f"{m['matmul_peak_flops_per_second']['bfloat16' if m['precision'] == 'bf16' else 'float32'] / 1e9:.0f} "
            f"GFLOP/s a {m['matmul_size']}² matmul reaches on this CPU in the same run (fp32: "
            f"{m['matmul_peak_flops_per_second']['float32'] / 1e9:.0f} GFLOP/s)."]


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


def where_trained(results: dict) -> str:
    """Which device trained which runs, and for how long ("the 96 search runs on the CPU, 2 threads (9.1 h); ...")."""
    groups = {}
    for run in results["runs"]:
        device = run.get("device", f"cpu, {results['settings'].get('threads', 2)} threads")  # older runs: the CPU
        groups.setdefault((run["phase"], device), []).append(run)
    parts = []
    for (phase, device), runs in groups.items():
        where = f"the CPU, {device.split(', ')[1]}" if device.startswith("cpu") else f"an {device} GPU"
        parts.append(f"the {len(runs)} {phase} runs on {where} ({hours({'runs': runs}):.1f} h of training and "
                     f"validation)")
    return "; ".join(parts)


def device_check(results: dict) -> list[str]:
    """Seed 0 of the same configuration trained on the CPU and on the GPU: how far the device alone moves a run."""
    earlier = {r["key"]: r for r in results.get("device_check", {}).get("runs", [])}
    pairs = [(earlier[r["key"]], r) for r in results["runs"] if r["key"] in earlier]
    if not pairs:
        return []
    deltas = [100 * (gpu["test"] - cpu["test"]) for cpu, gpu in pairs]
    rows = compare_summary(results)
    spread = statistics.fmean(100 * r["test_std"] for r in rows if r["seeds"] > 1)
    return [f"Same seed, other device: {len(pairs)} methods' seed-0 final runs were made first on the CPU "
            f"(2 threads), then again on the GPU with the same configuration, learning rate and seed. Test accuracy "
            f"moved by {statistics.fmean(abs(d) for d in deltas):.1f} points on average (GPU − CPU from "
            f"{min(deltas):+.1f} to {max(deltas):+.1f}, mean {statistics.fmean(deltas):+.1f}), about the spread "
            f"between seeds (the mean std over seeds above is {spread:.1f}): at this test size the device acts as "
            f"one more source of run-to-run noise. The table uses the GPU runs only; the CPU runs are kept in the file "
            f"(`device_check`)."]


def size(n: int) -> str:
    return f"{n / 2**20:.1f} MB" if n >= 2**20 else f"{n / 1024:.0f} kB"


def qlora_tables(results: dict) -> list[str]:
    """QLoRA on SmolLM2's Q4_1 file: exactness, memory, step time, the loss curves, NF4 against Q4_1-style blocks."""
    m, t, tr, lora = results["memory"], results["training"], results["timing"], results["lora"]
    load = results["load_average_before"][0]
    lines = [f"{results['model']} kept as the Q4_1 blocks of `{results['gguf']}` ({m['quantized_linears']} linears, "
             f"{m['weights']:,} weights), dequantized in every forward and backward; LoRA r = {lora['r']} on "
             f"{', '.join(lora['targets'])}. Dequantized weights against transformers' loaded fp32 weights: max "
             f"difference {results['dequantization']['max_abs_weight_diff_vs_transformers']:g}; logits "
             f"{results['dequantization']['max_abs_logit_diff_vs_fp32']:g}. {results['threads']} thread, load "
             f"average {load:.1f} at the start (timings from a busy machine, interleaved step by step).", "",
             "| | fp32 base | Q4_1 base |", "|---|--:|--:|",
             f"| frozen linears, MiB | {m['base_linears_mb']['fp32']:.0f} "
             f"| {m['base_linears_mb']['q4_1_packed']:.1f} |",
             f"| whole model, MiB | {m['whole_model_mb']['fp32']:.0f} | {m['whole_model_mb']['q4_1']:.0f} |",
             f"| saved for the backward, MiB (batch {'×'.join(map(str, m['saved_batch_shape']))}) "
             f"| {m['saved_for_backward_mb']['fp32']:.0f} | {m['saved_for_backward_mb']['q4_1']:.0f} |",
             f"| training step, s (median of {lora['steps']}) | {t['fp32']['median_seconds_per_step']:.2f} "
             f"| {t['q4_1']['median_seconds_per_step']:.2f} |",
             f"| one-token forward, s | {tr['forward_one_token_seconds']['fp32']:.3f} "
             f"| {tr['forward_one_token_seconds']['q4_1']:.3f} |",
             f"| validation loss after {lora['steps']} steps (from {t['fp32']['val_before']:.2f}) "
             f"| {t['fp32']['val_after']:.3f} | {t['q4_1']['val_after']:.3f} |", "",
             "The fp32 base is the same Q4_1 weights dequantized once (the original bf16 weights are not shipped), so "
             "identical curves show the on-the-fly arithmetic is exact, not what 4 bits cost against the original.",
             "", "Quantization error ‖w − ŵ‖² / ‖w‖² (%) of 4-bit formats, block constants in fp32:", "",
             "| weights | NF4, 64 | Q4_1-style, 64 | Q4_0, 32 | NF4, 32 | Q4_1-style, 32 | Q4_0, 64 |",
             "|---|--:|--:|--:|--:|--:|--:|"]
    names = {"embedding_q8_0": "embedding (stored Q8_0)", "gaussian": "Gaussian numbers",
             "linears_q4_1_in_file": "the linears (already on Q4_1 grids)"}
    order = ["nf4_block64", "q4_1_block64", "q4_0_block32", "nf4_block32", "q4_1_block32", "q4_0_block64"]
    for key, label in names.items():
        row = results["nf4_vs_q4_1"][key]
        lines.append(f"| {label} | " + " | ".join(f"{100 * row[f]['relative']:.3f}" for f in order) + " |")
    bits = results["nf4_vs_q4_1"]["gaussian"]
    lines += ["", "Bits per weight with fp16 constants: " + ", ".join(
        f"{f.replace('_block', ', blocks of ')} {bits[f]['bits_per_weight']:g}" for f in order) + "."]
    return lines


def report() -> str:
    parts = [START]
    names = ("compare_methods", "rank_sweep", "vs_peft", "profile_step", "notebook_times", "convergence", "speedups",
             "time_to_accuracy")
    compare, sweep, peft, profile, times, convergence, speedups, tta = (load(f"{n}.json") for n in names)
    qlora, rslora, expressivity = load("qlora.json"), load("rslora_sweep.json"), load("expressivity.json")
    token_tasks = load("token_tasks.json")
    parts += ["### Notebooks", "", *notebook_table(times or {}), ""]
    if convergence:
        parts += ["### When learning stops (`data/results/convergence.json`)", "", *convergence_table(convergence),
                  "", "![validation accuracy over epochs](data/results/convergence.png)", ""]
    if compare and compare["runs"] and "search" in compare["settings"]:
        parts += ["### Every method on Rotten Tomatoes, trained to convergence (`data/results/compare_methods.json`)",
                  "", *compare_table(compare), "",
                  "![accuracy vs trainable parameters](data/results/compare_methods.png)", "",
                  "Accuracy targets, judged on the paired interval (met: all of it within the margin; not met: all of "
                  "it beyond):", "", *accuracy_targets(compare), ""]
        robust = robustness_table(compare)
        if robust:
            parts += ["### Out of domain and perturbed (`data/results/compare_methods.json`, the runs' extra tests)",
                      "", *robust, ""]
    if speedups:
        parts += ["### What the training defaults save (`data/results/speedups.json`)", "", *speedups_tables(speedups),
                  ""]
    if tta:
        parts += ["### Time to accuracy against peft + transformers.Trainer (`data/results/time_to_accuracy.json`)",
                  "", *time_to_accuracy_table(tta), ""]
    if qlora:
        parts += ["### QLoRA on the weights that shipped (`data/results/qlora.json`)", "", *qlora_tables(qlora), ""]
    if token_tasks and "ner_summary" in token_tasks:
        parts += ["### Token tasks: probes with control tasks, NER (`data/results/token_tasks.json`)", "",
                  *token_tasks_tables(token_tasks), ""]
    small = load("small_data.json")
    if small and "planned" in small:
        parts += ["### Few labels: learning curves (`data/results/small_data.json`)", "",
                  *small_data_table(small, compare), "", *versus_reference_table(small), "",
                  *augmentation_table(small), ""]
    if expressivity and expressivity.get("summary"):
        parts += ["### What the pretrained weights bring (`data/results/expressivity.json`)", "",
                  *expressivity_table(expressivity, compare), ""]
    if rslora and rslora.get("summary"):
        parts += ["### rsLoRA against LoRA over the rank (`data/results/rslora_sweep.json`)", "",
                  *rslora_table(rslora), ""]
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
