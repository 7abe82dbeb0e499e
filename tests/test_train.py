"""The training loop: batches (length-grouped or not), learning-rate schedule, causal-LM loss, precision, dropout in
the frozen base, determinism, early stopping."""
import datasets
import pytest
import torch
import transformers
from torch import nn
from torch.nn import functional as F

from minipeft import train as train_module
from minipeft.lab import models
from minipeft.methods.finetune import apply_finetune
from minipeft.methods.lora import apply_lora
from minipeft.methods.probing import Classifier
from minipeft.train import (evaluate, linear_schedule, logits_and_targets, predictions, resolve_precision,
                            train)
from minipeft.batching import length_grouped_batches, lm_batch, make_loader

TEXTS = ["a good film", "bad", "great acting, a fine plot and a score that stays with you", "terrible and boring",
         "loved it", "I hated every minute of it", "fine", "a waste of two hours"]
LABELS = [1, 0, 1, 0, 1, 0, 1, 0]


def toy_data(n_copies=2):
    return datasets.Dataset.from_dict({"text": TEXTS * n_copies, "label": LABELS * n_copies})


def lora_classifier(seed=0):
    torch.manual_seed(seed)  # the head's initialisation
    return apply_lora(Classifier(models.tiny_bert()), r=2, dropout=0.1)


def without_seconds(history):
    return [{k: v for k, v in row.items() if k != "seconds"} for row in history]


# ---------------------------------------------------------------- batches
def test_batches_are_padded_to_their_longest_row_and_truncated(bert_tokenizer):
    loader = make_loader(toy_data(1), bert_tokenizer, ("text",), batch_size=2, max_length=8, group_by_length=False)
    lengths = [min(len(bert_tokenizer(t)["input_ids"]), 8) for t in TEXTS]
    batches = list(loader)
    assert [b["input_ids"].shape[1] for b in batches] == [max(lengths[i:i + 2]) for i in range(0, 8, 2)]
    assert torch.cat([b["attention_mask"].sum(1) for b in batches]).tolist() == lengths
    assert torch.cat([b["labels"] for b in batches]).tolist() == LABELS
    assert "token_type_ids" not in batches[0]  # all zeros for single texts: dropped
    assert batches[1]["input_ids"].shape[1] == 8  # the long review is cut at max_length


def test_text_pairs_are_encoded_as_pairs(bert_tokenizer):
    pairs = datasets.Dataset.from_dict({"premise": ["A man sleeps.", "Dogs bark loudly at night."],
                                        "hypothesis": ["Someone rests.", "It is quiet."], "label": [1, 0]})
    batch = next(iter(make_loader(pairs, bert_tokenizer, ("premise", "hypothesis"), batch_size=2,
                                  group_by_length=False)))
    expected = bert_tokenizer(list(pairs["premise"]), list(pairs["hypothesis"]), padding=True, return_tensors="pt")
    assert torch.equal(batch["input_ids"], expected["input_ids"])
    assert torch.equal(batch["token_type_ids"], expected["token_type_ids"]) and batch["token_type_ids"].max() == 1


@pytest.mark.parametrize("grouped", [False, True])
def test_shuffling_depends_on_the_seed_only(bert_tokenizer, grouped):
    def order(seed):
        loader = make_loader(toy_data(4), bert_tokenizer, "text", batch_size=4, shuffle=True, seed=seed,
                             group_by_length=grouped)
        return torch.cat([b["input_ids"].sum(1) for b in loader]).tolist()
    assert order(3) == order(3) and order(3) != order(4)


def test_length_grouped_batches_cover_every_row_once_and_are_reproducible():
    lengths = [int(x) for x in torch.randint(3, 80, (1000,), generator=torch.Generator().manual_seed(0))]

    def epoch(seed):
        return length_grouped_batches(lengths, 32, torch.Generator().manual_seed(seed), mega_batches=5)

    batches = epoch(0)
    assert sorted(i for b in batches for i in b) == list(range(1000))  # every row exactly once
    assert batches == epoch(0) and batches != epoch(1)
    assert sum(len(b) < 32 for b in batches) == 1  # only the end of the last mega-batch is short
    longest = [max(lengths[i] for i in b) for b in batches]
    downs = sum(a > b for a, b in zip(longest, longest[1:]))
    assert downs < 0.7 * (len(batches) - 1)  # the batches' order is shuffled, not longest first
    padded = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    random = [list(range(i, min(i + 32, 1000))) for i in range(0, 1000, 32)]  # lengths are random: any cut will do
    assert padded < 0.8 * sum(len(b) * max(lengths[i] for i in b) for b in random)  # far less padding


def test_grouped_loader_pads_less_and_changes_order_each_epoch(bert_tokenizer):
    texts = [" ".join(["word"] * n) for n in range(1, 65)] * 2
    data = datasets.Dataset.from_dict({"text": texts, "label": [n % 2 for n in range(128)]})
    grouped = make_loader(data, bert_tokenizer, "text", batch_size=8, shuffle=True, seed=0)
    plain = make_loader(data, bert_tokenizer, "text", batch_size=8, shuffle=True, seed=0, group_by_length=False)
    size = lambda loader: sum(b["input_ids"].numel() for b in loader)  # noqa: E731
    assert size(grouped) < 0.75 * size(plain)
    first, second = [[b["input_ids"].sum().item() for b in grouped] for _ in range(2)]
    assert sorted(first) == sorted(second) or first != second  # a new epoch: new batches or a new order
    assert first != second


def test_evaluation_loader_runs_longest_first_and_predictions_come_back_in_dataset_order(bert_tokenizer):
    data = toy_data(1)
    loader = make_loader(data, bert_tokenizer, "text", batch_size=3)  # evaluation: sorted by length
    widths = [b["input_ids"].shape[1] for b in loader]
    assert widths == sorted(widths, reverse=True)

    class FirstToken(nn.Module):  # "class 1" when the text is longer than 4 tokens: checkable row by row
        def forward(self, input_ids, attention_mask, **_):
            long = attention_mask.sum(1) > 4
            return {"logits": F.one_hot(long.long(), 2).float()}

    hits = predictions(FirstToken(), loader)
    expected = [int((len(bert_tokenizer(t)["input_ids"]) > 4) == label) for t, label in zip(TEXTS, LABELS)]
    assert hits.tolist() == expected


# ---------------------------------------------------------------- learning-rate schedule
def test_linear_warmup_then_linear_decay():
    assert [linear_schedule(s, 2, 6) for s in range(7)] == [0.0, 0.5, 1.0, 0.75, 0.5, 0.25, 0.0]
    assert linear_schedule(0, 0, 4) == 1.0  # no warm-up: start at the full rate
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    reference = transformers.get_linear_schedule_with_warmup(optimizer, 3, 20)
    assert [linear_schedule(s, 3, 20) for s in range(20)] == pytest.approx(
        [reference.lr_lambdas[0](s) for s in range(20)], abs=1e-12)


def test_train_follows_the_schedule(bert_tokenizer):
    loader = make_loader(toy_data(), bert_tokenizer, "text", batch_size=4)
    history, _ = train(lora_classifier(), loader, lr=0.1, steps=10, warmup=0.2, eval_every=1, progress=False)
    assert [row["lr"] for row in history] == pytest.approx([0.1 * linear_schedule(s, 2, 10) for s in range(10)])
    assert [row["step"] for row in history] == list(range(1, 11)) and history[0]["metric"] is None


# ---------------------------------------------------------------- causal language modelling
def test_lm_batch_learns_the_target_tokens_only(llama_tokenizer):
    tok = llama_tokenizer
    batch = lm_batch(tok, ["Question: 2 + 2 =", "Hi"], [" 4", " hello there"], max_length=64)
    for row, (prompt, target) in enumerate([("Question: 2 + 2 =", " 4"), ("Hi", " hello there")]):
        p = tok(prompt)["input_ids"]
        t = tok(target, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        n, width = len(p) + len(t), batch["input_ids"].shape[1]
        assert batch["input_ids"][row].tolist() == p + t + [tok.pad_token_id] * (width - n)
        assert batch["labels"][row].tolist() == [-100] * len(p) + t + [-100] * (width - n)
        assert batch["attention_mask"][row].tolist() == [1] * n + [0] * (width - n)


def test_lm_batch_cuts_long_prompts_from_the_left(llama_tokenizer):
    prompt = " ".join(str(i) for i in range(40))
    batch = lm_batch(llama_tokenizer, [prompt], [" end"], max_length=10)
    target = llama_tokenizer(" end", add_special_tokens=False)["input_ids"] + [llama_tokenizer.eos_token_id]
    assert batch["input_ids"].shape == (1, 10)
    kept = 10 - len(target)
    assert batch["input_ids"][0, :kept].tolist() == llama_tokenizer(prompt)["input_ids"][-kept:]
    assert batch["labels"][0, -len(target):].tolist() == target


def test_causal_lm_loss_is_the_mean_target_token_nll(tiny_llama, llama_tokenizer):
    batch = lm_batch(llama_tokenizer, ["The capital of France is", "2 + 2 ="], [" Paris", " four, I think"])
    loss = F.cross_entropy(*logits_and_targets(tiny_llama, batch, "causal_lm"), ignore_index=-100)
    logits = tiny_llama(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    nll = [-torch.log_softmax(logits[b, t - 1], -1)[batch["labels"][b, t]]  # position t-1 predicts token t
           for b in range(2) for t in range(1, logits.shape[1]) if batch["labels"][b, t] != -100]
    assert len(nll) == (batch["labels"] != -100).sum()
    assert torch.allclose(loss, torch.stack(nll).mean(), atol=1e-6)
    hits = [logits[b, t - 1].argmax() == batch["labels"][b, t]
            for b in range(2) for t in range(1, logits.shape[1]) if batch["labels"][b, t] != -100]
    assert evaluate(tiny_llama, [batch], "causal_lm") == sum(hits) / len(hits)


class VirtualTokensInFront(nn.Module):
    """Like a prompt method: k extra positions in front of the real ones (their logits are junk)."""

    def __init__(self, model, k=3):
        super().__init__()
        self.model, self.k = model, k

    def forward(self, **inputs):
        logits = self.model(**inputs)["logits"]
        return {"logits": torch.cat([torch.randn(logits.shape[0], self.k, logits.shape[2]) * 50, logits], 1)}


def test_causal_lm_loss_reads_the_last_positions(tiny_llama, llama_tokenizer):
    batch = lm_batch(llama_tokenizer, ["Say yes:", "Then say no"], [" yes", " no"])
    plain = F.cross_entropy(*logits_and_targets(tiny_llama, batch, "causal_lm"), ignore_index=-100)
    shifted = F.cross_entropy(*logits_and_targets(VirtualTokensInFront(tiny_llama), batch, "causal_lm"),
                              ignore_index=-100)
    assert torch.equal(plain, shifted)


def test_causal_lm_training_lowers_the_target_loss(tiny_llama, llama_tokenizer):
    data = datasets.Dataset.from_dict({"prompt": ["Colour of the sky:", "Colour of grass:"] * 4,
                                       "target": [" blue", " green"] * 4})
    tiny_llama.requires_grad_(True)
    loader = make_loader(data, llama_tokenizer, ("prompt", "target"), batch_size=4, task="causal_lm")
    history, stats = train(tiny_llama, loader, loader, lr=3e-2, steps=8, eval_every=2, warmup=0,
                           task="causal_lm", precision="fp32", progress=False)
    assert history[-1]["loss"] < history[0]["loss"] / 2
    assert stats["best_metric"] == max(row["metric"] for row in history) == evaluate(tiny_llama, loader, "causal_lm")


# ---------------------------------------------------------------- evaluation
class Constant(nn.Module):
    def __init__(self, answer):
        super().__init__()
        self.answer = answer

    def forward(self, input_ids, **_):
        return {"logits": F.one_hot(torch.full(input_ids.shape[:1], self.answer), 2).float()}


def test_evaluate_is_accuracy(bert_tokenizer):
    data = datasets.Dataset.from_dict({"text": ["x"] * 5, "label": [1, 1, 1, 0, 0]})
    for grouped in (True, False):
        loader = make_loader(data, bert_tokenizer, "text", batch_size=2, group_by_length=grouped)
        assert evaluate(Constant(1), loader) == 0.6 and evaluate(Constant(0), loader) == 0.4


# ---------------------------------------------------------------- determinism and early stopping
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_same_seed_gives_the_same_history_and_weights_bit_for_bit(bert_tokenizer, precision):
    loader = make_loader(toy_data(), bert_tokenizer, "text", batch_size=4, shuffle=True)  # one loader for all runs

    def run(seed, disturb=0):
        model = lora_classifier()
        torch.rand(disturb)  # whatever ran before must not matter: train seeds dropout itself
        history, _ = train(model, loader, loader, lr=1e-2, steps=8, eval_every=2, seed=seed, precision=precision,
                           progress=False)
        return without_seconds(history), model.state_dict()

    (h1, w1), (h2, w2), (h3, _) = run(0), run(0, disturb=5), run(1)
    assert h1 == h2 and h1 != h3  # seed 1 shuffles and drops out differently
    assert w1.keys() == w2.keys() and all(torch.equal(w1[k], w2[k]) for k in w1)
    assert not torch.equal(w1["head.weight"], lora_classifier().head.weight)  # it did train


def test_early_stopping_restores_the_weights_of_the_best_evaluation(bert_tokenizer, monkeypatch):
    scripted, seen = iter([0.5, 0.7, 0.6, 0.65, 0.9]), []

    def fake_evaluate(model, loader, task, precision):
        seen.append({n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad})
        return next(scripted)

    monkeypatch.setattr("minipeft.train.evaluate", fake_evaluate)
    model = lora_classifier()
    loader = make_loader(toy_data(), bert_tokenizer, "text", batch_size=4)
    history, stats = train(model, loader, loader, lr=1e-2, steps=20, eval_every=2, patience=2, progress=False)
    assert [row["metric"] for row in history] == [0.5, 0.7, 0.6, 0.65]  # 2 evaluations without a better one
    assert stats["steps"] == 8 and (stats["best_step"], stats["best_metric"]) == (4, 0.7)
    now = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert all(torch.equal(now[n], seen[1][n]) for n in now)  # the weights of step 4, put back
    assert not all(torch.equal(now[n], seen[-1][n]) for n in now)


def test_early_stopping_with_ties_keeps_the_first_best_and_counts_patience_from_it(bert_tokenizer, monkeypatch):
    scripted, seen = iter([0.5, 0.7, 0.7, 0.7, 0.9]), []

    def fake_evaluate(model, loader, task, precision):
        seen.append({n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad})
        return next(scripted)

    monkeypatch.setattr("minipeft.train.evaluate", fake_evaluate)
    model = lora_classifier()
    loader = make_loader(toy_data(), bert_tokenizer, "text", batch_size=4)
    history, stats = train(model, loader, loader, lr=1e-2, steps=20, eval_every=2, patience=2, progress=False)
    assert [row["metric"] for row in history] == [0.5, 0.7, 0.7, 0.7]  # a tie is no improvement: stop at step 8
    assert (stats["best_step"], stats["best_metric"]) == (4, 0.7)
    now = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert all(torch.equal(now[n], seen[1][n]) for n in now)  # the FIRST of the tied best, not a later one
    assert not all(torch.equal(now[n], seen[2][n]) for n in now)


def test_epochs_and_argument_errors(bert_tokenizer):
    loader = make_loader(toy_data(), bert_tokenizer, "text", batch_size=4)  # 4 batches per epoch
    _, stats = train(lora_classifier(), loader, lr=1e-3, epochs=2, progress=False)
    assert stats["steps"] == 8
    with pytest.raises(ValueError, match="exactly one"):
        train(lora_classifier(), loader, lr=1e-3, steps=2, epochs=1)
    with pytest.raises(ValueError, match="val_loader"):
        train(lora_classifier(), loader, lr=1e-3, steps=2, patience=1)
    frozen = Classifier(models.tiny_bert()).requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        train(frozen, loader, lr=1e-3, steps=2)
    with pytest.raises(ValueError, match="task must be"):
        train(lora_classifier(), loader, lr=1e-3, steps=2, task="regression", progress=False)
    with pytest.raises(ValueError, match="precision must be"):
        train(lora_classifier(), loader, lr=1e-3, steps=2, precision="fp16", progress=False)


def test_stats_report_raw_step_times_and_the_on_step_hook_sees_every_step(bert_tokenizer):
    loader = make_loader(toy_data(), bert_tokenizer, "text", batch_size=4)
    calls = []
    _, stats = train(lora_classifier(), loader, lr=1e-3, steps=5, on_step=lambda *a: calls.append(a), progress=False)
    assert [c[0] for c in calls] == [1, 2, 3, 4, 5] and [c[1] for c in calls] == stats["step_seconds"]
    assert stats["seconds_per_step"] == sorted(stats["step_seconds"])[2] > 0
    assert stats["trainable_params"] == sum(p.numel() for p in lora_classifier().parameters() if p.requires_grad)


# ---------------------------------------------------------------- bf16 autocast and dropout in the frozen base
def test_auto_precision_is_bf16_only_where_the_hardware_has_it(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setattr(train_module, "bf16_is_fast", lambda device: True)
    assert resolve_precision("auto", cpu) == "bf16" and resolve_precision("fp32", cpu) == "fp32"
    monkeypatch.setattr(train_module, "bf16_is_fast", lambda device: False)
    assert resolve_precision("auto", cpu) == "fp32" and resolve_precision("bf16", cpu) == "bf16"


def test_bf16_training_follows_the_fp32_loss_curve(bert_tokenizer):
    """bf16 autocast keeps fp32 master weights and an fp32 loss: on a tiny model its loss curve stays within
    0.03 (absolute, cross-entropy of about 0.7) of fp32's over 12 steps, while the runs are not identical."""
    loader = make_loader(toy_data(4), bert_tokenizer, "text", batch_size=8, shuffle=True)
    curves = {}
    for precision in ("fp32", "bf16"):
        losses = []
        train(lora_classifier(), loader, lr=1e-2, steps=12, precision=precision, progress=False,
              on_step=lambda step, seconds, loss: losses.append(loss))
        curves[precision] = losses
    assert curves["fp32"] != curves["bf16"]  # bf16 did run: the products are rounded differently
    assert max(abs(a - b) for a, b in zip(curves["fp32"], curves["bf16"])) < 0.03
    assert curves["bf16"][-1] < curves["bf16"][0]  # and it learns


def dropout_modules_in_training(model):
    return {n for n, m in model.named_modules() if isinstance(m, nn.Dropout) and m.training}


def test_dropout_in_a_frozen_base_is_off_by_default_and_on_when_the_base_trains(bert_tokenizer):
    loader = make_loader(toy_data(), bert_tokenizer, "text", batch_size=4)
    seen = {}

    def watch(label, model):
        return lambda step, seconds, loss: seen.setdefault(label, dropout_modules_in_training(model))

    lora = lora_classifier()  # LoRA with dropout 0.1 on A's input: its own dropout stays on
    _, stats = train(lora, loader, lr=1e-3, steps=2, on_step=watch("lora", lora), progress=False)
    assert stats["base_dropout"] is False and seen["lora"] and all(".adapters." in n for n in seen["lora"])
    on = lora_classifier()
    _, stats = train(on, loader, lr=1e-3, steps=2, base_dropout=True, on_step=watch("on", on), progress=False)
    assert stats["base_dropout"] is True and any(".adapters." not in n for n in seen["on"])
    full = apply_finetune(Classifier(models.tiny_bert()))
    _, stats = train(full, loader, lr=1e-3, steps=2, on_step=watch("full", full), progress=False)
    assert stats["base_dropout"] is True and any(".adapters." not in n for n in seen["full"])


def test_dropout_off_in_the_base_makes_a_frozen_base_deterministic(bert_tokenizer):
    """With the base's dropout off, a LoRA model (no dropout of its own) computes the same loss twice on one batch
    in train mode; with it on, not."""
    batch = next(iter(make_loader(toy_data(), bert_tokenizer, "text", batch_size=4)))
    for base_dropout, same in ((False, True), (True, False)):
        model = apply_lora(Classifier(models.tiny_bert(hidden_dropout_prob=0.5)), r=2)
        train_module.set_train_mode(model, base_dropout)
        losses = [model(**batch)["loss"].item() for _ in range(2)]
        assert (losses[0] == losses[1]) is same


def test_the_progress_bar_ends_on_the_best_metric_train_returns(bert_tokenizer, monkeypatch, capsys):
    """The bar under a notebook's slider must not contradict the accuracy it reports (the last evaluation is best)."""
    monkeypatch.setattr("minipeft.train.evaluate", lambda model, loader, task, precision: next(scripted))
    scripted = iter([0.5, 0.6, 0.8])
    loader = make_loader(toy_data(), bert_tokenizer, "text", batch_size=4)
    _, stats = train(lora_classifier(), loader, loader, lr=1e-2, steps=6, eval_every=2, progress=True)
    assert stats["best_metric"] == 0.8
    last = capsys.readouterr().err.rstrip().split("\r")[-1]  # the bar as it was left
    assert "6/6" in last and "best=0.8," in last, last
