"""The slider widgets show what the closed forms and the measured counts say, for the value the slider is at."""
import pytest
import torch

from minipeft import count_parameters
from minipeft.lab.models import tiny_bert
from minipeft.lab.widgets import SizeExplorer
from minipeft.methods.bottleneck import apply_bottleneck, bottleneck_parameter_count
from minipeft.methods.lora import apply_lora, lora_parameter_count
from minipeft.methods.probing import Classifier, probe_parameter_count

HEAD = probe_parameter_count(32, 2)
BASE = count_parameters(Classifier(tiny_bert(), 2))["total"]


def lora_explorer(**kw):
    count = lambda r: lora_parameter_count([(32, 32)] * 4, r) + HEAD  # noqa: E731  (2 layers × query, value)
    return SizeExplorer([1, 2, 4, 8, 16], count, BASE - HEAD, **kw)


@pytest.mark.parametrize("r", [1, 4, 16])
def test_slider_shows_the_measured_count_of_that_rank(r):
    explorer = lora_explorer()
    explorer.slider.value = r
    model = apply_lora(Classifier(tiny_bert(), 2), ["query", "value"], r=r)
    measured = count_parameters(model)
    shown = explorer.numbers()
    assert shown["size"] == r and shown["trainable"] == measured["trainable"]
    assert shown["percent"] == pytest.approx(measured["percent"], rel=1e-12)
    assert f"{measured['trainable']:,}" in explorer.info.value  # the text on screen follows the slider


def test_adapter_slider_and_file_size():
    count = lambda r: bottleneck_parameter_count(2, 32, r, "houlsby") + HEAD  # noqa: E731
    explorer = SizeExplorer([2, 8], count, BASE - HEAD, name="bottleneck r")
    explorer.slider.value = 8
    model = apply_bottleneck(Classifier(tiny_bert(), 2), r=8, placement="houlsby")
    assert explorer.numbers()["trainable"] == count_parameters(model)["trainable"]
    assert explorer.numbers()["file_bytes"] == 4 * count_parameters(model)["trainable"]


def test_sweep_accuracy_follows_the_slider_and_says_when_missing():
    explorer = lora_explorer(sweep={4: 0.75, 8: 0.8})
    explorer.slider.value = 8
    assert explorer.numbers()["sweep_accuracy"] == 0.8 and "0.800" in explorer.info.value
    explorer.slider.value = 2
    assert explorer.numbers()["sweep_accuracy"] is None and "not measured" in explorer.info.value


def test_train_button_trains_the_chosen_rank_and_shows_the_result():
    calls = []

    def train(r):  # a real (tiny) training step, so the callback runs end to end
        model = apply_lora(Classifier(tiny_bert(), 2), ["query", "value"], r=r)
        ids = torch.randint(1000, 2000, (4, 6))
        loss = model(ids, labels=torch.tensor([0, 1, 0, 1]))["loss"]
        loss.backward()
        calls.append(r)
        return 0.5 + r / 100

    explorer = lora_explorer(train=train)
    explorer.slider.value = 16
    explorer.button.click()
    assert calls == [16]
    assert explorer.numbers()["live_accuracy"] == pytest.approx(0.66)
    assert "0.660" in explorer.info.value
    explorer.slider.value = 4  # another rank has no live result yet
    assert explorer.numbers()["live_accuracy"] is None


def test_sweep_accuracy_reads_compare_results(tmp_path):
    import json

    from minipeft.lab.compare import run_key
    from minipeft.lab.widgets import sweep_accuracy
    def key(label, method, kw, seed, phase="final"):
        return json.dumps([label, method, kw, None, 1e-3, seed, phase], sort_keys=True)

    results = {"runs": [
        {"key": key("LoRA r=2", "lora", {"r": 2}, 0), "test": 0.7},
        {"key": key("LoRA r=2", "lora", {"r": 2}, 1), "test": 0.8},
        {"key": key("LoRA r=2", "lora", {"r": 2}, 0, "search"), "validation": 0.1},  # no test: left out
        {"key": key("LoRA r=8", "lora", {"r": 8}, 0), "test": 0.9},
        {"key": key("Houlsby r=8", "bottleneck", {"r": 8, "placement": "houlsby"}, 0), "test": 0.6},
        {"key": key("Pfeiffer r=8", "bottleneck", {"r": 8, "placement": "pfeiffer"}, 0), "test": 0.65},
    ]}
    assert sweep_accuracy(results, "lora", "r") == pytest.approx({2: 0.75, 8: 0.9})
    assert sweep_accuracy(results, "bottleneck", "r", placement="pfeiffer") == {8: 0.65}
    old_name = {"runs": [{"key": key("Pfeiffer r=4", "adapter", {"r": 4, "placement": "pfeiffer"}, 0), "test": 0.7}]}
    assert sweep_accuracy(old_name, "bottleneck", "r", placement="pfeiffer") == {4: 0.7}  # rank_sweep.json's name
    # the keys above are in compare.run_key's format
    assert run_key({"label": "LoRA r=2", "method": "lora", "kwargs": {"r": 2}}, 1e-3, 0, "final") == \
        key("LoRA r=2", "lora", {"r": 2}, 0)


def test_slider_starts_where_asked_and_training_another_size_does_not_move_it():
    explorer = lora_explorer(value=2, train=lambda r: 0.5 + r / 100)
    assert explorer.slider.value == 2
    assert explorer.train_live(16) == pytest.approx(0.66)  # a notebook cell training r = 16, as notebook 06 does
    assert explorer.slider.value == 2 and explorer.numbers()["size"] == 2
    assert explorer.live == {16: pytest.approx(0.66)}
    assert lora_explorer().slider.value == 4  # no value: the middle size
    with pytest.raises(ValueError, match="not one of the slider's sizes"):
        lora_explorer(value=3)


def test_button_says_which_size_it_trains_and_is_disabled_while_training(capsys):
    seen = []

    def train(r):
        seen.append((r, explorer.button.disabled, explorer.slider.disabled))
        return 0.7

    explorer = lora_explorer(train=train)
    explorer.slider.value = 16
    assert explorer.button.description == "Train rank r = 16 live"  # the label follows the slider
    assert not explorer.button.disabled
    explorer.button.click()
    assert seen == [(16, True, True)]  # both disabled during the run
    assert not explorer.button.disabled and not explorer.slider.disabled  # and back afterwards
    printed = capsys.readouterr().out  # outside a kernel the Output widget lets prints through
    assert "training rank r = 16 …" in printed and "rank r = 16: live accuracy 0.700" in printed


def test_a_failing_run_gives_the_controls_back_and_says_why(capsys):
    def train(r):
        raise RuntimeError("out of memory")

    explorer = lora_explorer(train=train)
    with pytest.raises(RuntimeError, match="out of memory"):
        explorer.train_live()
    assert not explorer.button.disabled and not explorer.slider.disabled
    assert explorer.live == {} and "not measured" in explorer.info.value
    assert "training rank r = 4 failed: RuntimeError: out of memory" in capsys.readouterr().out


def test_moving_the_slider_clears_the_last_runs_output():
    explorer = lora_explorer(train=lambda r: 0.7)
    cleared = []
    explorer.output.clear_output = lambda *args, **kwargs: cleared.append(explorer.slider.value)
    explorer.train_live()  # clears the old bar before a run
    assert cleared == [4]
    explorer.slider.value = 8  # a stale bar of r = 4 must not stay under r = 8
    assert cleared == [4, 8]
    explorer.slider.value = 8  # no move, nothing to clear
    assert cleared == [4, 8]
