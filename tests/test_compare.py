"""The comparison harness: building each method on a copy of the base model, a learning-rate search that cannot stop
at the edge of its grid, seeds at the chosen rate, paired intervals, a JSON record per run, resuming."""
import json
import os
import re
import statistics
import subprocess
import sys
import threading
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch

from minipeft.lab import compare as harness
from minipeft.lab import models, robustness
from minipeft.methods.lora import lora_parameter_count
from minipeft.params import count_parameters
from minipeft.train import train as real_train

METHODS = [{"label": "probe", "method": "probe", "classifier": {"pooling": "cls"}, "lrs": [1e-3, 1e-2, 1e-1]},
           {"label": "LoRA", "method": "lora", "kwargs": {"r": 2}, "lrs": [1e-3, 1e-2, 1e-1]}]
# scripted validation accuracy by (label, lr): the probe's best is inside its grid; LoRA's is at the top end
# and keeps rising for one more step beyond it (1.0), then falls (10.0): the search must go up twice.
VALIDATION = {"probe": {1e-3: 0.6, 1e-2: 0.8, 1e-1: 0.7},
              "LoRA": {1e-3: 0.5, 1e-2: 0.6, 1e-1: 0.7, 1.0: 0.75, 10.0: 0.55}}
SEARCH, FINAL = {"epochs": 1, "eval_every": 1}, {"epochs": 2, "eval_every": 1, "patience": 3}


@pytest.fixture
def data():
    texts = ["good", "bad", "a fine film", "an awful film", "loved it", "hated it", "great", "boring"]
    labels = [1, 0, 1, 0, 1, 0, 1, 0]
    split = datasets.Dataset.from_dict({"text": texts, "label": labels})
    return datasets.DatasetDict(train=split, validation=split.select(range(4)), test=split.select(range(4, 8)))


@pytest.fixture
def counted(monkeypatch):
    """Counts the training runs the harness starts (fail_at=n raises in the n-th: an interrupted benchmark).
    Real training, but scripted accuracies: validation by method and learning rate; test hits by run order."""
    calls = {"n": 0, "fail_at": None, "labels": []}

    def counting_train(model, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == calls["fail_at"]:
            raise KeyboardInterrupt
        history, stats = real_train(model, *args, **kwargs)
        label = "probe" if model.pooling == "cls" else "LoRA"
        calls["labels"].append((label, kwargs["lr"], kwargs["epochs"]))
        return history, {**stats, "best_metric": VALIDATION[label][kwargs["lr"]]}

    monkeypatch.setattr(harness, "train", counting_train)
    monkeypatch.setattr(harness, "predictions", lambda model, loader: torch.tensor([1, calls["n"] % 2, 1, 0],
                                                                                   dtype=torch.uint8))
    return calls


def run(data, bert_tokenizer, out, methods=METHODS, **overrides):
    options = dict(search=SEARCH, final=FINAL, seeds=2, batch_size=4, max_length=16, progress=False, budget="tiny",
                   reference="probe")
    return harness.compare(methods, data, ("text",), models.tiny_bert(), bert_tokenizer, out,
                           **{**options, **overrides})


def test_build_applies_the_method_to_a_copy_of_the_backbone(tiny_bert):
    before = {n: p.clone() for n, p in tiny_bert.named_parameters()}
    probe = harness.build({"method": "probe", "classifier": {"head": "mlp", "pooling": "cls"}}, tiny_bert)
    lora = harness.build({"method": "lora", "kwargs": {"r": 4, "targets": ["query"]}, "classifier": {"pooling": "cls"}},
                         tiny_bert, num_labels=3)
    top = harness.build({"method": "finetune", "kwargs": {"top_k": 1}}, tiny_bert)
    assert count_parameters(probe)["trainable"] == 32 * 32 + 32 + 32 * 2 + 2 and probe.pooling == "cls"
    assert count_parameters(lora)["trainable"] == lora_parameter_count([(32, 32)] * 2, 4) + 32 * 3 + 3
    assert 0 < count_parameters(top)["trainable"] < count_parameters(top)["total"]
    assert dict(tiny_bert.named_parameters()).keys() == before.keys()  # nothing was inserted into the original
    assert all(p.requires_grad and torch.equal(p, before[n]) for n, p in tiny_bert.named_parameters())
    assert not hasattr(tiny_bert, "minipeft_configs")  # nor recorded on it
    with pytest.raises(KeyError, match="unknown method 'lora2'"):
        harness.build({"method": "lora2"}, tiny_bert)


def test_next_rate_extends_a_grid_only_past_an_end_that_wins():
    assert harness.next_rate({1: 0.5, 2: 0.7, 4: 0.6}, 2) is None  # best inside
    assert harness.next_rate({1: 0.5, 2: 0.6, 4: 0.7}, 2) == 8  # best at the top: one more step up
    assert harness.next_rate({1: 0.8, 2: 0.6, 4: 0.7}, 2) == 0.5  # best at the bottom: one more step down
    assert harness.next_rate({1: 0.7, 2: 0.7, 4: 0.6}, 2) is None  # a tie at the end is not a win: stop
    assert harness.next_rate({1: 0.7}, 2) is None


def test_search_extends_until_the_best_is_inside_then_seeds_run_at_it(data, bert_tokenizer, tmp_path, counted):
    results = run(data, bert_tokenizer, tmp_path / "results.json")
    assert json.loads((tmp_path / "results.json").read_text()) == results
    assert results["settings"]["budget"] == "tiny" and results["settings"]["sizes"] == {
        "train": 8, "validation": 4, "test": 4}
    search = [r for r in results["runs"] if r["phase"] == "search"]
    assert [(r["label"], r["lr"]) for r in search] == [("probe", 1e-3), ("probe", 1e-2), ("probe", 1e-1),
                                                       ("LoRA", 1e-3), ("LoRA", 1e-2), ("LoRA", 1e-1),
                                                       ("LoRA", 1.0), ("LoRA", 10.0)]  # up twice past the grid
    assert all(epochs == SEARCH["epochs"] for _, _, epochs in counted["labels"][:8])
    assert all("test" not in r for r in search)  # the search never reads the test split
    probe, lora = results["summary"]
    assert (probe["lr"], lora["lr"]) == (1e-2, 1.0) and not probe["at_edge"] and not lora["at_edge"]
    assert lora["search"] == [[lr, accuracy] for lr, accuracy in VALIDATION["LoRA"].items()]
    final = [r for r in results["runs"] if r["phase"] == "final"]
    assert [(r["label"], r["lr"], r["seed"]) for r in final] == [("probe", 1e-2, 0), ("LoRA", 1.0, 0),
                                                                 ("probe", 1e-2, 1), ("LoRA", 1.0, 1)]
    assert all(epochs == FINAL["epochs"] for _, _, epochs in counted["labels"][8:])
    for row in (probe, lora):
        test = [r["test"] for r in final if r["label"] == row["label"]]
        assert row["seeds"] == 2 and row["complete"] and row["test_mean"] == statistics.fmean(test)
        assert row["test_std"] == statistics.stdev(test)
        assert row["trainable_params"] == next(r for r in final if r["label"] == row["label"])["stats"][
            "trainable_params"] > 0
    assert "vs_reference" not in probe and lora["vs_reference"]["examples"] == 4
    assert all(len(r["test_hits"]) == 4 and set(r["test_hits"]) <= {"0", "1"} for r in final)


def test_a_second_run_trains_nothing_and_an_interrupted_one_resumes(data, bert_tokenizer, tmp_path, counted):
    out = tmp_path / "results.json"
    counted["fail_at"] = 4
    with pytest.raises(KeyboardInterrupt):
        run(data, bert_tokenizer, out)
    assert len(json.loads(out.read_text())["runs"]) == 3  # each finished run was written at once
    counted.update(n=0, fail_at=None)
    first = run(data, bert_tokenizer, out)
    assert counted["n"] == 12 - 3  # only the missing runs
    counted["n"] = 0
    second = run(data, bert_tokenizer, out)
    assert counted["n"] == 0 and second == first


def test_partial_results_say_they_are_partial(data, bert_tokenizer, tmp_path, counted):
    out = tmp_path / "results.json"
    counted["fail_at"] = 12  # the last final run (LoRA, seed 1) never finishes
    with pytest.raises(KeyboardInterrupt):
        run(data, bert_tokenizer, out)
    results = json.loads(out.read_text())
    rows = harness.summarize(METHODS, {r["key"]: r for r in results["runs"]}, 2, "probe")
    assert [(r["seeds"], r["complete"]) for r in rows] == [(2, True), (1, False)]


def test_a_changed_method_is_run_again_and_changed_settings_are_refused(data, bert_tokenizer, tmp_path, counted):
    out = tmp_path / "results.json"
    run(data, bert_tokenizer, out, seeds=1)
    counted["n"] = 0
    results = run(data, bert_tokenizer, out, [METHODS[0], {**METHODS[1], "kwargs": {"r": 3}}], seeds=1)
    assert results["summary"][1]["trainable_params"] == 3 * 64 * 2 * 2 + 66  # from the new r=3 runs
    assert counted["n"] == 5 + 1  # LoRA's search and final run again, with r=3; the probe's are reused
    with pytest.raises(ValueError, match="other settings"):
        run(data, bert_tokenizer, out, seeds=1, final={**FINAL, "epochs": 3})


def test_a_file_without_runs_takes_the_settings_and_keeps_what_else_it_holds(data, bert_tokenizer, tmp_path,
                                                                              counted):
    out = tmp_path / "results.json"  # e.g. speedups.json after --timing-only: a timing, no runs yet
    out.write_text(json.dumps({"settings": {"seeds": 3}, "runs": [], "timing": {"rows": {"a": 1}}}))
    results = run(data, bert_tokenizer, out, [{**METHODS[1], "lr": 1e-2}], seeds=1)
    saved = json.loads(out.read_text())
    assert saved["timing"] == {"rows": {"a": 1}} and saved["settings"] == results["settings"]
    assert saved["settings"]["seeds"] == 1 and len(saved["runs"]) == 1


def test_final_runs_also_predict_the_extra_tests_which_are_not_settings(data, bert_tokenizer, tmp_path, counted):
    out = tmp_path / "results.json"
    counted["fail_at"] = 2  # stopped after seed 0, before the extra tests existed
    with pytest.raises(KeyboardInterrupt):
        run(data, bert_tokenizer, out, [{**METHODS[1], "lr": 1e-2}], seeds=2)
    counted["fail_at"] = None
    extra = {"shifted": (data["train"].select(range(6)), 8)}
    results = run(data, bert_tokenizer, out, [{**METHODS[1], "lr": 1e-2}], seeds=2, extra_tests=extra)
    first, second = results["runs"]
    assert "extra" not in first  # resumed, not re-run
    assert set(second["extra"]) == {"shifted"} and set(second["extra"]["shifted"]) == {"accuracy", "hits"}
    assert results["extra_tests"] == {"shifted": {"examples": 6, "max_length": 8}}


def test_processes_that_train_one_seed_each_merge_into_the_whole_comparison(data, bert_tokenizer, tmp_path,
                                                                         counted):
    whole = run(data, bert_tokenizer, tmp_path / "whole.json")
    searched = run(data, bert_tokenizer, tmp_path / "searched.json", train_seeds=[])  # phase 1 only
    assert {r["phase"] for r in searched["runs"]} == {"search"}
    counted["n"] = 0
    parts = [run(data, bert_tokenizer, tmp_path / f"seed{seed}.json", reuse=tmp_path / "searched.json",
                 train_seeds=[seed]) for seed in (1, 0)]
    assert counted["n"] == 4  # 2 methods × 1 seed in each process; the search runs were copied
    assert [r["seed"] for r in parts[0]["runs"] if r["phase"] == "final"] == [1, 1]
    merged = json.loads((tmp_path / "searched.json").read_text())
    assert [harness.merge(merged, part) for part in parts] == [2, 2]
    assert harness.merge(merged, parts[0]) == 0  # merging again adds nothing
    assert sorted(r["key"] for r in merged["runs"]) == sorted(r["key"] for r in whole["runs"])
    threads = torch.get_num_threads()
    assert {r["device"] for r in merged["runs"]} == {f"cpu, {threads} thread{'s' if threads != 1 else ''}"}
    other = run(data, bert_tokenizer, tmp_path / "other.json", seeds=1)
    with pytest.raises(ValueError, match="other settings"):
        harness.merge(merged, other)


def test_a_fixed_rate_skips_the_search(data, bert_tokenizer, tmp_path, counted):
    results = run(data, bert_tokenizer, tmp_path / "fixed.json", [{**METHODS[1], "lr": 1e-2}], seeds=1)
    assert [(r["phase"], r["lr"]) for r in results["runs"]] == [("final", 1e-2)] and counted["n"] == 1


def test_a_configs_training_overrides_reach_train_and_its_batch_order(data, bert_tokenizer, tmp_path, counted,
                                                                     monkeypatch):
    seen = []
    counting = harness.train
    monkeypatch.setattr(harness, "train", lambda model, loader, *a, **kw: (
        seen.append((kw["precision"], kw.get("warmup"), type(loader.batch_sampler).__name__)),
        counting(model, loader, *a, **kw))[1])
    default = {**METHODS[1], "lr": 1e-2}
    switched = [{**default, "label": "LoRA, fp32, no warm-up", "train": {"precision": "fp32", "warmup": 0.0}},
                {**default, "label": "LoRA, random batches", "train": {"group_by_length": False}}]
    results = run(data, bert_tokenizer, tmp_path / "switched.json", [default, *switched], seeds=1)
    assert seen == [("auto", None, "LengthGroupedSampler"), ("fp32", 0.0, "LengthGroupedSampler"),
                    ("auto", None, "BatchSampler")]  # a plain DataLoader: random batches
    keys = [r["key"] for r in results["runs"]]
    assert len(set(keys)) == 3 and "group_by_length" in keys[2]  # the override is part of the run's identity


def test_runs_of_another_comparison_with_the_same_budget_are_reused(data, bert_tokenizer, tmp_path, counted):
    first = run(data, bert_tokenizer, tmp_path / "first.json", seeds=2)
    counted["n"] = 0
    second = run(data, bert_tokenizer, tmp_path / "second.json", seeds=1, reuse=tmp_path / "first.json")
    assert counted["n"] == 0  # every search run and every seed-0 run was in the first file
    assert second["runs"] == [r for r in first["runs"] if r["seed"] == 0]
    counted["n"] = 0
    third = run(data, bert_tokenizer, tmp_path / "third.json", [{**METHODS[1], "kwargs": {"r": 3}}], seeds=1,
                reuse=tmp_path / "first.json")
    assert counted["n"] == 6 and len(third["runs"]) == 6  # another configuration: trained, nothing copied
    with pytest.raises(ValueError, match="cannot reuse.*final"):
        run(data, bert_tokenizer, tmp_path / "fourth.json", final={**FINAL, "epochs": 3}, reuse=tmp_path / "first.json")


def test_paired_difference_is_the_accuracy_gap_with_a_paired_interval():
    rng = np.random.default_rng(0)
    reference = rng.random(2000) < 0.8
    same = harness.paired_difference([reference], [reference], samples=500)
    assert same["difference"] == same["low"] == same["high"] == 0.0  # the same answers: no uncertainty at all
    better = reference.copy()
    better[np.flatnonzero(~reference)[:40]] = True  # right on 40 more examples, wrong on none more
    gap = harness.paired_difference([better], [reference], samples=2000)
    assert gap["difference"] == pytest.approx(40 / 2000)
    # paired: only the 40 discordant examples vary, so the interval is about 0.02 ± 1.96·√40/2000, far narrower
    # than two independent accuracies' ±1.96·√(2·0.8·0.2/2000) ≈ ±0.025
    assert gap["low"] > 0.01 and gap["high"] < 0.03
    assert gap["high"] - gap["low"] == pytest.approx(2 * 1.96 * np.sqrt(40) / 2000, rel=0.2)
    noisy = harness.paired_difference([better, reference], [reference, reference], samples=2000)
    assert noisy["difference"] == pytest.approx(20 / 2000) and noisy["seeds"] == 2
    assert noisy["high"] - noisy["low"] > gap["high"] - gap["low"]  # seed-to-seed variation widens it
    with pytest.raises(ValueError, match="same test examples"):
        harness.paired_difference([better], [reference[:10]])


def test_hits_round_trip_through_text():
    hits = torch.tensor([1, 0, 0, 1, 1], dtype=torch.uint8)
    assert harness.hits_to_text(hits) == "10011"
    assert harness.text_to_hits("10011").tolist() == [1, 0, 0, 1, 1]


def benchmark_script(name: str = "compare_methods"):
    """A script of benchmarks/ as a module (they import compare_methods from their own folder)."""
    import importlib.util
    from pathlib import Path
    folder = Path(__file__).resolve().parents[1] / "benchmarks"
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
    spec = importlib.util.spec_from_file_location(name, folder / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_benchmark_compares_every_method_with_a_grid_of_at_least_4_rates():
    bench = benchmark_script()
    labels = [m["label"] for m in bench.METHODS]
    assert len(labels) == 21 and len(set(labels)) == 21 and "full fine-tuning" in labels
    assert "LoRA r=8 (all linear layers)" in labels
    lora, dora = (next(m for m in bench.METHODS if m["label"] == label) for label in ("LoRA r=8", "DoRA r=8"))
    assert dora["method"] == "dora" and dora["kwargs"] == lora["kwargs"]  # the same rank, targets and scale
    for config in bench.METHODS:
        lrs = config["lrs"]
        assert len(lrs) >= 4 and lrs == sorted(lrs)
        ratios = [b / a for a, b in zip(lrs, lrs[1:])]
        assert max(ratios) / min(ratios) < 1.01  # log-spaced


@pytest.mark.slow
def test_the_benchmark_starts_in_quick_mode(tmp_path):
    out = tmp_path / "quick.json"
    benchmark_script().main(["--quick", "--out", str(out)])
    results = json.loads(out.read_text())
    assert [row["label"] for row in results["summary"]] == ["full fine-tuning", "LoRA r=8"]
    assert all(row["complete"] for row in results["summary"])
    assert out.with_suffix(".png").stat().st_size > 10_000


@pytest.mark.slow
def test_the_benchmark_trains_its_final_runs_in_worker_processes(tmp_path):
    out = tmp_path / "quick.json"  # a script of its own, as a user runs it: the workers import it by name
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "compare_methods.py"
    subprocess.run([sys.executable, str(script), "--quick", "--out", str(out), "--workers", "2", "--seeds", "1", "0",
                    "--no-costs"], check=True, capture_output=True, env=os.environ | {"MINIPEFT_THREADS": "1"})
    results = json.loads(out.read_text())
    finals = [r for r in results["runs"] if r["phase"] == "final"]
    assert sorted((r["label"], r["seed"]) for r in finals) == [("LoRA r=8", 0), ("LoRA r=8", 1),
                                                                ("full fine-tuning", 0), ("full fine-tuning", 1)]
    assert all(row["complete"] for row in results["summary"]) and all("extra" in r for r in finals)
    assert len({r["key"] for r in results["runs"]}) == len(results["runs"])  # each run once


def test_the_benchmarks_worker_pool_runs_every_job_once_and_never_waits_on_nothing():
    pool = benchmark_script("workers")
    seen = []  # builtins as start and work: a spawned process can import them
    pool.in_workers([-1, -2, 3, -4], 2, int, (), abs, lambda job, future: seen.append((job, future.result())))
    assert sorted(seen) == [(-4, 4), (-2, 2), (-1, 1), (3, 3)]
    held, asked = [], []  # a job waits while its prerequisite (here: the job before it) is running

    def ready(todo, running):
        asked.append((list(todo), list(running)))
        return None if running else todo[0]

    pool.in_workers([1, 2], 2, int, (), abs, lambda job, future: held.append(job), ready=ready)
    assert ([2], [1]) in asked and held == [1, 2]  # 2 was held back while 1 ran
    errors = []  # nothing running and nothing ready: an error, not a loop that spins forever

    def stuck():
        try:
            pool.in_workers([1], 1, int, (), abs, print, ready=lambda todo, running: None)
        except RuntimeError as error:
            errors.append(str(error))

    thread = threading.Thread(target=stuck, daemon=True)
    thread.start()
    thread.join(timeout=60)
    assert errors and "no job can start" in errors[0]


def test_the_benchmark_refuses_an_unknown_first_label(tmp_path):
    with pytest.raises(SystemExit, match="no method labelled"):
        benchmark_script().main(["--quick", "--out", str(tmp_path / "q.json"), "--first", "LoRA r=9"])


@pytest.mark.slow
def test_the_rslora_sweep_starts_in_quick_mode():
    results = json.loads(benchmark_script("rslora_sweep").main(["--quick"]).read_text())
    labels = [row["label"] for row in results["summary"]]
    assert labels == ["LoRA α/r r=1", "rsLoRA α/√r r=1", "LoRA α/r r=4", "rsLoRA α/√r r=4"]
    sizes = results["update_size"]["relative"]
    assert set(sizes) == set(labels) and all(size > 0 for size in sizes.values())
    # after the same steps, α/r's update shrinks with the rank (16/1 → 16/4); α/√r's shrinks less
    assert sizes["LoRA α/r r=4"] / sizes["LoRA α/r r=1"] < sizes["rsLoRA α/√r r=4"] / sizes["rsLoRA α/√r r=1"]


def test_the_expressivity_benchmark_pairs_the_comparisons_configurations_on_random_weights():
    bench = benchmark_script("expressivity")
    compared = benchmark_script().BY_LABEL
    for config in bench.methods():
        original = compared[config["label"].removesuffix(bench.RANDOM)]
        assert {k: v for k, v in config.items() if k != "label"} == {k: v for k, v in original.items() if k != "label"}
    tiny = models.tiny_bert()
    fresh = bench.random_like(tiny)
    assert type(fresh) is type(tiny) and fresh.config.to_dict() == tiny.config.to_dict()
    for (name, a), (_, b) in zip(tiny.named_parameters(), fresh.named_parameters()):
        assert a.shape == b.shape, name
    weight = fresh.encoder.layer[0].attention.self.query.weight
    assert not torch.equal(weight, tiny.encoder.layer[0].attention.self.query.weight)
    assert abs(weight.std().item() - tiny.config.initializer_range) < 0.005  # drawn as transformers initialises


@pytest.mark.slow
def test_the_expressivity_benchmark_starts_in_quick_mode():
    results = json.loads(benchmark_script("expressivity").main(["--quick"]).read_text())
    assert [row["label"] for row in results["summary"]] == ["LoRA r=8 (random weights)",
                                                             "full fine-tuning (random weights)"]
    assert results["settings"]["model"].endswith("random weights (seed 0)")


def test_robustness_reads_the_change_from_the_test_split_paired_where_the_examples_are_the_same():
    def run(label, seed, test, extra):
        return {"label": label, "phase": "final", "seed": seed, "test_hits": test,
                "extra": {name: {"hits": hits} for name, hits in extra.items()}}
    results = {"runs": [
        run("LoRA", 0, "1111111100" * 20, {"typos": "1111110100" * 20, "imdb": "1100" * 25}),
        run("LoRA", 1, "1111111110" * 20, {"typos": "1111111010" * 20, "imdb": "1110" * 25}),
        {"label": "LoRA", "phase": "final", "seed": 2, "test_hits": "0" * 200},  # made before the extra tests
        {"label": "probe", "phase": "search", "seed": 0}]}
    (row,) = robustness.robustness(results, samples=2000)
    assert row["label"] == "LoRA" and row["seeds"] == [0, 1] and row["test"] == pytest.approx(0.85)
    typos, imdb = row["extra"]["typos"], row["extra"]["imdb"]
    assert typos["paired"] and not imdb["paired"]
    assert typos["change"] == pytest.approx(-0.1) and imdb["change"] == pytest.approx(0.625 - 0.85)
    assert typos["low"] <= typos["change"] <= typos["high"] and imdb["low"] <= imdb["change"] <= imdb["high"]
    # the same change, read paired, is sharper than read as two independent samples would be
    unpaired = robustness.change_interval(*(np.stack([harness.text_to_hits(t).astype(float) for t in pair])
                                         for pair in (("1111110100" * 20, "1111111010" * 20),
                                                      ("1111111100" * 20, "1111111110" * 20))), False, 2000)
    assert typos["high"] - typos["low"] < unpaired["high"] - unpaired["low"]


def test_change_versus_the_reference_is_the_difference_of_the_two_changes():
    def run(label, test, extra):
        return {"label": label, "phase": "final", "seed": 0, "test_hits": test, "extra": {"typos": {"hits": extra}}}
    results = {"runs": [run("full", "1" * 90 + "0" * 10, "1" * 80 + "0" * 20),  # loses 10 points
                        run("LoRA", "0" * 10 + "1" * 90, "0" * 10 + "1" * 90),  # loses nothing
                        run("copy", "1" * 90 + "0" * 10, "1" * 80 + "0" * 20)]}
    kept = robustness.change_versus(results, "LoRA", "full", "typos", samples=2000)
    assert kept["difference"] == pytest.approx(0.1) and 0.03 < kept["low"] < kept["high"] < 0.2
    # paired: only the reference's 10 changed snippets vary, sd √(100·0.1·0.9)/100 = 0.03, so the interval is about
    # ±0.06; with the copy's snippets drawn apart from the originals it would be over twice as wide
    assert kept["high"] - kept["low"] == pytest.approx(2 * 1.96 * 0.03, rel=0.25)
    same = robustness.change_versus(results, "copy", "full", "typos", samples=500)
    assert same["difference"] == same["low"] == same["high"] == 0.0  # the same answers: no uncertainty


def test_the_ablations_pair_with_default_runs_made_on_the_cpu(tmp_path):
    speedups = benchmark_script("speedups")
    path = tmp_path / "compare_methods.json"
    path.write_text(json.dumps({"settings": {}, "runs": [
        {"key": "a", "device": "NVIDIA H200"}, {"key": "b", "device": "cpu, 2 threads"}, {"key": "c"}],
        "device_check": {"runs": [{"key": "a", "device": "cpu, 2 threads"}]}}))
    kept = json.loads(speedups.cpu_runs(path).read_text())["runs"]
    assert [(r["key"], r.get("device")) for r in kept] == [("b", "cpu, 2 threads"), ("c", None),
                                                           ("a", "cpu, 2 threads")]


def test_small_data_budget_is_counted_in_steps_and_draws_are_other_users_data():
    bench = benchmark_script("small_data")
    assert bench.budget(16, 16) == {"epochs": 200, "eval_every": 12, "patience": 4}  # 1 step an epoch
    assert bench.budget(4096, 32) == {"epochs": 4, "eval_every": 32, "patience": 4}  # 128 steps an epoch
    assert set(bench.METHODS) <= set(benchmark_script().BY_LABEL)
    texts = [f"snippet {i} of a film" for i in range(40)]
    split = datasets.Dataset.from_dict({"text": texts, "label": [i % 2 for i in range(40)]})
    split = split.cast_column("label", datasets.ClassLabel(names=["rotten", "fresh"]))
    task = {"train": split, "validation": split, "test": split.select(range(8))}
    first, other = bench.draw(task, 8, 0), bench.draw(task, 8, 1)
    assert len(first["train"]) == len(first["validation"]) == 8 and sum(first["train"]["label"]) == 4
    assert first["train"]["text"] != other["train"]["text"] and first["test"] is task["test"]
    augmented = bench.draw(task, 8, 0, "neighbour swap")
    assert augmented["train"]["text"][:8] == first["train"]["text"] and len(augmented["train"]) == 16
    assert augmented["train"]["label"][8:] == first["train"]["label"]


@pytest.mark.slow
def test_the_small_data_benchmark_starts_in_quick_mode():
    bench = benchmark_script("small_data")
    results = json.loads(bench.main(["--quick"]).read_text())
    cells = {(r["label"], r["n"], r["augmentation"]): len(r["test"]) for r in results["rows"]}
    assert cells[("LoRA r=8", 8, None)] == 2 and cells[("BitFit", 16, None)] == 1
    assert cells[("LoRA r=8", 8, "synonyms")] == 2 and ("LoRA r=8", 16, "synonyms") not in cells
    assert results["complete"] and results["cells_done"] == results["planned"]["cells"] == 3 + 3 * 2
    assert results["planned"] == {"methods": ["LoRA r=8", "BitFit"], "draws": {"8": 2, "16": 1}, "cells": 9,
                                  "augmentations": sorted(bench.AUGMENTATIONS), "augment_sizes": [8]}
    effects = {(r["label"], r["augmentation"]): r for r in results["augmentation"]}
    assert len(effects) == 2 * 3 and all(r["n"] == 8 and r["draws"] == [0, 1] for r in effects.values())
    row = effects[("BitFit", "word dropout")]
    plain, augmented = ({r["augmentation"]: r for r in results["rows"] if r["label"] == "BitFit" and r["n"] == 8}[a]
                        for a in (None, "word dropout"))
    assert row["gains"] == pytest.approx([a - p for a, p in zip(augmented["test"], plain["test"])])
    assert row["interval"][0] <= row["mean"] <= row["interval"][1]
    # an augmented run trains once, at the rate its method chose on the same draw without augmentation
    assert augmented["lrs"] == plain["lrs"]


@pytest.mark.slow
def test_small_data_sizes_runs_only_those_cells_and_counts_against_the_whole_plan(capsys):
    bench = benchmark_script("small_data")
    results = json.loads(bench.main(["--quick", "--sizes", "16"]).read_text())
    assert {(r["n"], r["augmentation"]) for r in results["rows"]} == {(16, None)}  # not the 8s, not augmented
    assert results["cells_done"] == 1 and results["planned"]["cells"] == 9 and not results["complete"]
    with pytest.raises(SystemExit):
        bench.main(["--quick", "--sizes", "64"])  # not a size of the (quick) plan
    assert "the plan's sizes are [8, 16]" in capsys.readouterr().err


def test_small_data_runs_draw_by_draw_and_an_augmented_job_waits_for_its_plain_one(tmp_path):
    bench = benchmark_script("small_data")
    plan = bench.ordered([16, 64], {16: 2, 64: 1}, [64])
    assert plan == [(16, 0, None), (64, 0, None), *[(64, 0, a) for a in bench.AUGMENTATIONS], (16, 1, None)]
    todo = [(64, 0, None, "BitFit"), (64, 0, "synonyms", "BitFit"), (64, 0, "synonyms", "LoRA r=8")]
    assert bench.next_ready(todo[1:], [todo[0]]) == (64, 0, "synonyms", "LoRA r=8")  # BitFit's plain job runs
    assert bench.next_ready(todo[1:2], [todo[0]]) is None
    assert bench.next_ready(todo[1:2], []) == todo[1]
    methods = [{"label": "LoRA r=8", "method": "lora", "lrs": [1e-3, 1e-2]},
               {"label": "BitFit", "method": "bitfit", "lrs": [1e-3, 1e-2]}]
    summary = [{"label": "LoRA r=8", "seeds": 1, "lr": 1e-3}, {"label": "BitFit", "seeds": 0, "lr": None}]
    (tmp_path / "n64_draw0.json").write_text(json.dumps({"summary": summary}))
    conf = {"methods": methods}
    assert bench.cell_methods(conf, tmp_path, 64, 0, None) is methods
    assert bench.cell_methods(conf, tmp_path, 64, 0, "synonyms") == [{"label": "LoRA r=8", "method": "lora",
                                                                      "lr": 1e-3}]
    with pytest.raises(ValueError, match="run the plain cell first"):
        bench.run_job({**conf, "task": None}, None, None, tmp_path, 64, 0, "synonyms", "BitFit")


def test_small_data_jobs_skip_what_a_cell_holds_and_parts_merge_into_their_cell(tmp_path):
    bench = benchmark_script("small_data")
    methods = [{"label": "LoRA r=8", "method": "lora", "lrs": [1e-3, 1e-2]},
               {"label": "BitFit", "method": "bitfit", "lrs": [1e-3, 1e-2]}]
    conf, plan = {"methods": methods}, [(8, 0, None), (8, 1, None)]

    def runs(config):  # a search over the grid and the final run at its best rate, as compare writes them
        made = [{"key": harness.run_key(config, lr, 0, "search"), "phase": "search", "label": config["label"],
                 "lr": lr, "seed": 0, "validation": v} for lr, v in zip(config["lrs"], (0.6, 0.7))]
        return made + [{"key": harness.run_key(config, 1e-2, 0, "final"), "phase": "final", "label": config["label"],
                        "lr": 1e-2, "seed": 0, "validation": 0.7, "test": 0.65, "test_hits": "1100",
                        "stats": {"trainable_params": 1, "total_params": 2, "best_step": 4, "steps_per_epoch": 1}}]

    settings = {"n": 8, "draw": 0}
    (tmp_path / "n8_draw0.json").write_text(json.dumps({"settings": settings, "runs": runs(methods[0]),
                                                       "summary": harness.summarize(
                                                           methods, {r["key"]: r for r in runs(methods[0])}, 1,
                                                           None)}))
    assert bench.jobs(conf, tmp_path, plan) == [(8, 0, None, "BitFit"), (8, 1, None, "LoRA r=8"),
                                                (8, 1, None, "BitFit")]  # LoRA's final run of draw 0 is in
    part = bench.part_path(tmp_path, "n8_draw0", "BitFit")
    part.parent.mkdir()
    part.write_text(json.dumps({"settings": settings, "runs": runs(methods[1])}))
    bench.merge_part(conf, tmp_path, 8, 0, None, "BitFit")
    cell = json.loads((tmp_path / "n8_draw0.json").read_text())
    labels = ["LoRA r=8", "BitFit"]
    assert not part.exists() and len(cell["runs"]) == 6 and bench.cell_done(tmp_path / "n8_draw0.json", labels)
    assert not bench.cell_done(tmp_path / "n8_draw0.json", [*labels, "prompt tuning k=20"])  # a method not in yet
    assert not bench.cell_done(tmp_path / "n8_draw1.json", labels)
    assert [(row["label"], row["seeds"], row["lr"]) for row in cell["summary"]] == [("LoRA r=8", 1, 1e-2),
                                                                                    ("BitFit", 1, 1e-2)]
    assert bench.jobs(conf, tmp_path, plan) == [(8, 1, None, "LoRA r=8"), (8, 1, None, "BitFit")]


def test_small_data_compares_methods_and_augmentations_on_the_same_draws(tmp_path):
    bench = benchmark_script("small_data")

    def cell(n, d, augmentation, tests):  # a cell's file as merge_part writes it: one final run per method
        summary = [{"label": label, "seeds": 1, "test_mean": test, "lr": 1e-3} for label, test in tests.items()]
        settings = {"n": n, "draw": d, "augmentation": augmentation}
        (tmp_path / f"{bench.cell_name(n, d, augmentation)}.json").write_text(
            json.dumps({"settings": settings, "summary": summary}))

    cell(16, 0, None, {"full fine-tuning": 0.60, "LoRA r=8": 0.65})
    cell(16, 1, None, {"full fine-tuning": 0.70, "LoRA r=8": 0.72})
    cell(16, 2, None, {"LoRA r=8": 0.90})  # full fine-tuning's run of draw 2 not in: not paired
    cell(16, 0, "synonyms", {"LoRA r=8": 0.61})
    [row] = bench.versus_reference(tmp_path)
    assert (row["label"], row["n"], row["draws"]) == ("LoRA r=8", 16, [0, 1])
    assert row["gains"] == pytest.approx([0.05, 0.02]) and row["mean"] == pytest.approx(0.035)
    half = 12.706 * statistics.stdev([0.05, 0.02]) / 2 ** 0.5  # t(0.975, 1 df) × standard error
    assert row["interval"] == pytest.approx([0.035 - half, 0.035 + half])
    [effect] = bench.augmentation_effects(tmp_path)
    assert (effect["augmentation"], effect["draws"], effect["interval"]) == ("synonyms", [0], None)
    assert effect["gains"] == pytest.approx([0.61 - 0.65])  # against LoRA's own plain run of draw 0


@pytest.mark.slow
def test_the_small_data_benchmark_runs_its_cells_in_worker_processes():
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "small_data.py"
    done = subprocess.run([sys.executable, str(script), "--quick", "--workers", "2"], check=True,
                          capture_output=True, text=True, env=os.environ | {"MINIPEFT_THREADS": "1"})
    jobs = sorted(line.split(":")[0] for line in done.stdout.splitlines() if line.startswith("== n"))
    cells = sorted(["n16_draw0", "n8_draw0", "n8_draw1"] + [f"n8_draw{d}_{a}" for d in (0, 1)
                                                            for a in ("neighbour_swap", "synonyms", "word_dropout")])
    assert jobs == [f"== {cell}, {label}" for cell in cells
                    for label in ("BitFit", "LoRA r=8")]  # every method of every cell of the plan, once
    rows = sorted(re.match(r"(.+?)\s+n=(\d+)\s+(\D*?)\s*[\d.]+ ± .*\((\d+) draws\)", line).groups()
                  for line in done.stdout.splitlines() if line.startswith(("LoRA r=8 ", "BitFit ")) and "±" in line)
    augmented = [(label, "8", a, "2") for label in ("BitFit", "LoRA r=8")
                 for a in ("neighbour swap", "synonyms", "word dropout")]
    assert rows == sorted([("BitFit", "16", "", "1"), ("BitFit", "8", "", "2"), ("LoRA r=8", "16", "", "1"),
                           ("LoRA r=8", "8", "", "2"), *augmented])
    effects = [line for line in done.stdout.splitlines() if line.endswith("points (2 draws)")]
    assert len(effects) == 6  # augmented minus plain, for each method and augmentation


@pytest.mark.slow
def test_the_token_tasks_benchmark_starts_in_quick_mode():
    results = json.loads(benchmark_script("token_tasks").main(["--quick"]).read_text())
    probes = results["probes"]
    assert {(r["probe"], r["seed"]) for r in probes["runs"]} >= {("linear", 0), ("MLP (64)", 1), ("MLP (256)", 0)}
    assert len([r for r in probes["runs"] if r["probe"] == "linear"]) == probes["layers"] * 2  # every layer, 2 seeds
    summary = results["ner_summary"]
    assert set(summary["methods"]) == {"probe", "LoRA r=8", "full fine-tuning"}
    for row in summary["methods"].values():
        assert len(row["f1"]) == 2 and row["interval"][0] <= row["mean"] <= row["interval"][1]
    assert results["ner"]["probe"]["final"][0] in results["ner"]["probe"]["search"]  # seed 0 is the search's run


@pytest.mark.slow
def test_the_ablation_benchmark_starts_in_quick_mode_and_pairs_every_switch():
    results = json.loads(benchmark_script("speedups").main(["--quick"]).read_text())
    planned = ["full fine-tuning, fp32", "full fine-tuning, dropout off", "LoRA r=8, fp32", "LoRA r=8, dropout on",
               "LoRA r=8, random batches", "LoRA r=8, no warm-up"]
    assert results["planned"] == planned and list(results["differences"]) == planned
    assert all(g["seeds"] == g["reference_seeds"] == 1 for g in results["differences"].values())
    runs = {r["label"]: r for r in results["runs"]}
    assert runs["LoRA r=8, fp32"]["stats"]["precision"] == "fp32" and runs["LoRA r=8, dropout on"]["stats"][
        "base_dropout"] is True
    assert len(results["timing"]["rows"]) == 7 and results["timing"]["rows"][
        "LoRA r=8 | random batches, fp32, dropout on"]["speedup_vs_plain"] == 1.0
