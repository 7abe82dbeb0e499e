"""The comparison harness: building each method on a copy of the base model, the learning-rate choice on
validation, mean ± std over seeds, a JSON record per run, resuming an interrupted comparison."""
import json
import statistics

import datasets
import pytest
import torch

from minipeft import compare as harness
from minipeft import models
from minipeft.lora import lora_parameter_count
from minipeft.params import count_parameters
from minipeft.train import train as real_train

METHODS = [{"label": "probe", "method": "probe", "kwargs": {"pooling": "cls"}, "lrs": [1e-3, 1e-1]},
           {"label": "LoRA", "method": "lora", "kwargs": {"r": 2}, "lrs": [1e-3, 1e-2]}]
VALIDATION = {1e-3: 0.6, 1e-1: 0.8, 1e-2: 0.4}  # scripted: the probe's best lr is its second, LoRA's its first


@pytest.fixture
def data():
    texts = ["good", "bad", "a fine film", "an awful film", "loved it", "hated it", "great", "boring"]
    labels = [1, 0, 1, 0, 1, 0, 1, 0]
    split = datasets.Dataset.from_dict({"text": texts, "label": labels})
    return datasets.DatasetDict(train=split, validation=split.select(range(4)), test=split.select(range(4, 8)))


@pytest.fixture
def counted(monkeypatch):
    """Counts the training runs the harness starts (fail_at=n raises in the n-th: an interrupted benchmark).
    Real training, but scripted accuracies: validation by learning rate, test 0.50, 0.51, 0.52, ... in run order."""
    calls = {"n": 0, "fail_at": None}

    def counting_train(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == calls["fail_at"]:
            raise KeyboardInterrupt
        history, stats = real_train(*args, **kwargs)
        return history, {**stats, "best_metric": VALIDATION[kwargs["lr"]]}

    monkeypatch.setattr(harness, "train", counting_train)
    monkeypatch.setattr(harness, "evaluate", lambda model, loader: 0.5 + 0.01 * calls["n"])
    return calls


def run(data, bert_tokenizer, out, methods=METHODS, **overrides):
    options = dict(steps=3, seeds=2, batch_size=4, max_length=16, eval_every=1, progress=False, budget="tiny")
    return harness.compare(methods, data, ("text",), models.tiny_bert(), bert_tokenizer, out, **{**options, **overrides})


def test_build_applies_the_method_to_a_copy_of_the_backbone(tiny_bert):
    before = {n: p.clone() for n, p in tiny_bert.named_parameters()}
    probe = harness.build("probe", {"head": "mlp", "pooling": "cls"}, tiny_bert)
    lora = harness.build("lora", {"r": 4, "targets": ["query"]}, tiny_bert, num_labels=3, classifier={"pooling": "cls"})
    top = harness.build("finetune", {"top_k": 1}, tiny_bert)
    assert count_parameters(probe)["trainable"] == 32 * 32 + 32 + 32 * 2 + 2 and probe.pooling == "cls"
    assert count_parameters(lora)["trainable"] == lora_parameter_count([(32, 32)] * 2, 4) + 32 * 3 + 3
    assert 0 < count_parameters(top)["trainable"] < count_parameters(top)["total"]
    assert dict(tiny_bert.named_parameters()).keys() == before.keys()  # nothing was inserted into the original
    assert all(p.requires_grad and torch.equal(p, before[n]) for n, p in tiny_bert.named_parameters())
    with pytest.raises(KeyError, match="unknown method 'lora2'"):
        harness.build("lora2", {}, tiny_bert)


def test_compare_tunes_lr_on_seed_0_and_reports_test_mean_and_std(data, bert_tokenizer, tmp_path, counted):
    results = run(data, bert_tokenizer, tmp_path / "results.json")
    assert json.loads((tmp_path / "results.json").read_text()) == results
    assert results["settings"]["budget"] == "tiny" and results["settings"]["sizes"] == {
        "train": 8, "validation": 4, "test": 4}
    assert counted["n"] == len(results["runs"]) == 2 * (2 + 1)  # per method: 2 learning rates, then 1 more seed
    assert [row["lr"] for row in results["summary"]] == [1e-1, 1e-3]
    for config, row in zip(METHODS, results["summary"]):
        runs = [r for r in results["runs"] if r["label"] == config["label"]]
        tuned = {r["lr"]: r["validation"] for r in runs if r["seed"] == 0}
        assert tuned == {lr: VALIDATION[lr] for lr in config["lrs"]} and row["lr"] == max(tuned, key=tuned.get)
        extra = [r for r in runs if r["seed"] == 1]
        assert [r["lr"] for r in extra] == [row["lr"]]  # the other seeds run at the chosen learning rate only
        test = [r["test"] for r in runs if r["lr"] == row["lr"]]
        assert row["seeds"] == 2 and row["test_mean"] == statistics.fmean(test)
        assert row["test_std"] == statistics.stdev(test) > 0
        assert row["trainable_params"] == runs[0]["stats"]["trainable_params"] > 0
        assert all(len(r["history"]) == 3 and r["history"][-1]["step"] == 3 for r in runs)


def test_a_second_run_trains_nothing_and_an_interrupted_one_resumes(data, bert_tokenizer, tmp_path, counted):
    out = tmp_path / "results.json"
    counted["fail_at"] = 4
    with pytest.raises(KeyboardInterrupt):
        run(data, bert_tokenizer, out)
    assert len(json.loads(out.read_text())["runs"]) == 3  # each finished run was written at once
    counted.update(n=0, fail_at=None)
    first = run(data, bert_tokenizer, out)
    assert counted["n"] == 3  # only the 3 missing runs
    counted["n"] = 0
    second = run(data, bert_tokenizer, out)
    assert counted["n"] == 0 and second == first


def test_a_changed_method_is_run_again_and_changed_settings_are_refused(data, bert_tokenizer, tmp_path, counted):
    out = tmp_path / "results.json"
    run(data, bert_tokenizer, out, seeds=1)
    counted["n"] = 0
    results = run(data, bert_tokenizer, out, [METHODS[0], {**METHODS[1], "kwargs": {"r": 3}}], seeds=1)
    assert results["summary"][1]["trainable_params"] == 3 * 64 * 2 * 2 + 66  # from the new r=3 runs
    assert counted["n"] == 2  # LoRA's two learning rates again, with r=3; the probe runs are reused
    with pytest.raises(ValueError, match="other settings"):
        run(data, bert_tokenizer, out, seeds=1, steps=4)


def test_runs_of_another_comparison_with_the_same_budget_are_reused(data, bert_tokenizer, tmp_path, counted):
    first = run(data, bert_tokenizer, tmp_path / "first.json", seeds=2)
    counted["n"] = 0
    second = run(data, bert_tokenizer, tmp_path / "second.json", seeds=1, reuse=tmp_path / "first.json")
    assert counted["n"] == 0  # every seed-0 run was in the first file
    assert second["runs"] == [r for r in first["runs"] if r["seed"] == 0]
    assert json.loads((tmp_path / "second.json").read_text())["runs"] == second["runs"]
    counted["n"] = 0
    third = run(data, bert_tokenizer, tmp_path / "third.json", [{**METHODS[1], "kwargs": {"r": 3}}], seeds=1,
                reuse=tmp_path / "first.json")
    assert counted["n"] == 2 and len(third["runs"]) == 2  # another configuration: trained, nothing copied
    with pytest.raises(ValueError, match="cannot reuse.*steps"):
        run(data, bert_tokenizer, tmp_path / "fourth.json", steps=4, reuse=tmp_path / "first.json")


def benchmark_script():
    import importlib.util
    from pathlib import Path
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "compare_methods.py"
    spec = importlib.util.spec_from_file_location("compare_methods", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_benchmark_fits_its_stated_budget():
    bench = benchmark_script()
    s = bench.SETTINGS
    assert len(bench.METHODS) == 19 and len({m["label"] for m in bench.METHODS}) == 19
    hours = bench.estimate_hours(bench.METHODS, s["steps"], s["seeds"], s["eval_every"], s["n_validation"], 1265,
                                 max_length=s["max_length"])
    assert 1.8 < hours <= 2.05


@pytest.mark.slow
def test_the_benchmark_starts_in_quick_mode(tmp_path):
    out = tmp_path / "quick.json"
    benchmark_script().main(["--quick", "--out", str(out)])
    results = json.loads(out.read_text())
    assert [row["label"] for row in results["summary"]] == ["linear probe (mean)", "LoRA r=8"]
    assert results["settings"]["budget"]["target_hours"] == 2.0 and len(results["runs"]) == 4
    assert out.with_suffix(".png").stat().st_size > 10_000
