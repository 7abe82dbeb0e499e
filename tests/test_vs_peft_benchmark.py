"""benchmarks/vs_peft.py: the alternation it times with, its same-work guard, and a quick run end to end (the JSON
it writes has every documented field, and the fields agree with each other)."""
import importlib.util
import json
import statistics
from pathlib import Path

import pytest
import torch

from minipeft.lab import models


@pytest.fixture(scope="module")
def script():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "vs_peft.py"
    spec = importlib.util.spec_from_file_location("vs_peft_benchmark", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_alternate_rotates_the_order_and_drops_the_warmup(script):
    calls = []
    seconds = script.alternate({name: (lambda n=name: calls.append(n)) for name in "abc"}, warmup=2, steps=4)
    assert calls == list("abc" "bca" "cab" "abc" "bca" "cab")  # every round starts with the next one
    assert {name: len(s) for name, s in seconds.items()} == {"a": 4, "b": 4, "c": 4}


def test_refuses_to_compare_runs_that_start_differently(script, monkeypatch):
    """If peft's LoRA did not start from minipeft's weights (here: B not zero), the losses differ: refused."""
    copy_adapter = script.copy_adapter

    def copy_then_change(ours, theirs, method):
        copy_adapter(ours, theirs, method)
        with torch.no_grad():
            for name, p in theirs.named_parameters():
                if "lora_B" in name:
                    p.normal_()

    monkeypatch.setattr(script, "copy_adapter", copy_then_change)
    with pytest.raises(RuntimeError, match="different losses"):
        script.vs_peft(models.tiny_bert(), script.QUICK_MODELS["minilm"], "lora", {"warmup": 0, "steps": 1})


def test_a_target_is_judged_on_the_ratio_the_json_shows(script):
    """A ratio just past a limit that rounds onto it (0.95004 → 0.95) must not be written as 0.95 and "not met"."""
    results = {"vs_peft": {"minilm": {"lora": {"ratio": 0.95004}, "bitfit": {"ratio": 0.9501}}},
               "lora_vs_full": {"minilm": {"ratio": 0.5}}, "merged_inference": {"minilm": {"ratio": 1.03}}}
    rows = script.target_rows(results)
    assert all(row["met"] == (row["ratio"] <= row["limit"]) for row in rows)
    assert [row["met"] for row in rows] == [True, False, True, False]


@pytest.mark.slow  # about a minute on 2 busy cores: 8 method pairs, fresh processes for the peak RSS
def test_quick_run_writes_the_documented_json(script, tmp_path):
    out = tmp_path / "vs_peft.json"
    script.main(["--quick", "--out", str(out), "--note", "smoke test"])
    results = json.loads(out.read_text())
    settings, steps = results["settings"], script.QUICK_SETTINGS["steps"]
    assert settings["quick"] and settings["torch_threads"] == 1 and settings["steps"] == steps
    assert settings["peft"] == "0.21.2" and results["machine"]["note"] == "smoke test"
    assert len(results["machine"]["load_average_at_start"]) == len(results["machine"]["load_average_at_end"]) == 3
    assert len(results["machine"]["load_average_by_section"]) == 2 * (len(script.METHODS) + 1)

    def check_timing(entry):
        assert len(entry["seconds"]) == steps and all(s > 0 for s in entry["seconds"])
        assert entry["median_s"] == pytest.approx(statistics.median(entry["seconds"]), abs=1e-5)

    for model in ("minilm", "smollm2"):
        for method in script.METHODS:
            pair = results["vs_peft"][model][method]
            for side in ("minipeft", "peft"):
                check_timing(pair[side])
                assert set(pair[side]["memory_mb"]) == {"weights", "gradients", "optimizer", "activations"}
            assert pair["minipeft"]["trainable_params"] == pair["peft"]["trainable_params"] > 0
            assert pair["minipeft"]["start_loss"] == pytest.approx(pair["peft"]["start_loss"], abs=1e-4)
            assert pair["ratio"] == pytest.approx(pair["minipeft"]["median_s"] / pair["peft"]["median_s"])
        versus = results["lora_vs_full"][model]
        check_timing(versus["full"])
        assert versus["lora"]["seconds"] == results["vs_peft"][model]["lora"]["minipeft"]["seconds"]
        assert versus["full"]["trainable_params"] > 100 * versus["lora"]["trainable_params"]
        assert versus["full"]["memory_mb"]["optimizer"] > versus["lora"]["memory_mb"]["optimizer"]
        for kind in ("lora", "full"):
            rss = versus[kind]["peak_rss"]
            assert rss["after_2_steps_mb"] >= rss["after_setup_mb"] > 0
        merged = results["merged_inference"][model]
        check_timing(merged["base"])
        check_timing(merged["merged_lora"])
        assert merged["max_abs_diff_merged_vs_unmerged"] < 1e-4 < merged["max_abs_diff_merged_vs_base"]
    rows = results["targets"]
    assert len(rows) == 2 * len(script.METHODS) + 2 + 2
    assert all(row["met"] == (row["ratio"] <= row["limit"]) for row in rows)
    assert {row["target"] for row in rows} == set(script.TARGETS)


def test_profile_step_floor_is_the_frozen_model_with_input_gradients(monkeypatch):
    """benchmarks/profile_step.py --quick: the floor step trains nothing and leaves no gradient behind; the
    three medians and the operator tables are written, and the share is computed from those medians."""
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "profile_step.py"
    monkeypatch.syspath_prepend(str(path.parent))
    spec = importlib.util.spec_from_file_location("profile_step_benchmark", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    results = module.main(["--quick"])
    median = results["median_s"]
    assert set(median) == set(results["operators"]) == {"floor", "minipeft", "peft"}
    assert results["lora_path_share_of_minipeft_step"] == pytest.approx((median["minipeft"] - median["floor"])
                                                                        / median["minipeft"])
    assert all(any(op.startswith("aten::") for op in t["ops"]) for t in results["operators"].values())
    base = models.tiny_bert()
    run = module.vp.make_run(base, module.vp.QUICK_MODELS["minilm"], "minipeft", "lora")
    step = module.floor_step(base, run)
    step()
    assert all(p.grad is None for p in run.head.parameters()) and all(p.grad is None for p in base.parameters())
