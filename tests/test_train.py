"""The training loop: batches, learning-rate schedule, causal-LM loss, determinism, early stopping, run statistics."""
import datasets
import pytest
import torch
import transformers
from torch import nn
from torch.nn import functional as F

from minipeft import models
from minipeft.lora import apply_lora
from minipeft.measure import MB
from minipeft.params import count_parameters
from minipeft.probing import Classifier, apply_probe
from minipeft.saving import save_adapter
from minipeft.train import (evaluate, linear_schedule, lm_batch, logits_and_targets, make_loader, train)

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
    loader = make_loader(toy_data(1), bert_tokenizer, ("text",), batch_size=2, max_length=8)
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
    batch = next(iter(make_loader(pairs, bert_tokenizer, ("premise", "hypothesis"), batch_size=2)))
    expected = bert_tokenizer(list(pairs["premise"]), list(pairs["hypothesis"]), padding=True, return_tensors="pt")
    assert torch.equal(batch["input_ids"], expected["input_ids"])
    assert torch.equal(batch["token_type_ids"], expected["token_type_ids"]) and batch["token_type_ids"].max() == 1


def test_shuffling_depends_on_the_seed_only(bert_tokenizer):
    def order(seed):
        return torch.cat([b["labels"] for b in make_loader(toy_data(4), bert_tokenizer, "text", batch_size=4,
                                                           shuffle=True, seed=seed)]).tolist()
    assert order(3) == order(3) and order(3) != order(4)


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
    assert batch["input_ids"][0, :10 - len(target)].tolist() == llama_tokenizer(prompt)["input_ids"][-(10 - len(target)):]
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
                           task="causal_lm", progress=False)
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
    loader = make_loader(data, bert_tokenizer, "text", batch_size=2)
    assert evaluate(Constant(1), loader) == 0.6 and evaluate(Constant(0), loader) == 0.4


# ---------------------------------------------------------------- determinism and early stopping
def test_same_seed_gives_the_same_history_and_weights_bit_for_bit(bert_tokenizer):
    loader = make_loader(toy_data(), bert_tokenizer, "text", batch_size=4, shuffle=True)  # one loader for all runs

    def run(seed, disturb=0):
        model = lora_classifier()
        torch.rand(disturb)  # whatever ran before must not matter: train seeds dropout itself
        history, _ = train(model, loader, loader, lr=1e-2, steps=8, eval_every=2, seed=seed, progress=False)
        return without_seconds(history), model.state_dict()

    (h1, w1), (h2, w2), (h3, _) = run(0), run(0, disturb=5), run(1)
    assert h1 == h2 and h1 != h3  # seed 1 shuffles and drops out differently
    assert w1.keys() == w2.keys() and all(torch.equal(w1[k], w2[k]) for k in w1)
    assert not torch.equal(w1["head.weight"], lora_classifier().head.weight)  # it did train


def test_early_stopping_restores_the_weights_of_the_best_evaluation(bert_tokenizer, monkeypatch):
    scripted, seen = iter([0.5, 0.7, 0.6, 0.65, 0.9]), []

    def fake_evaluate(model, loader, task):
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


# ---------------------------------------------------------------- what a run costs
def test_run_stats_count_parameters_memory_and_bytes_on_disk(bert_tokenizer, tmp_path):
    loader = make_loader(toy_data(), bert_tokenizer, "text", batch_size=4)
    lora, probe = lora_classifier(), apply_probe(models.tiny_bert())
    _, lora_stats = train(lora, loader, lr=1e-3, steps=2, progress=False)
    _, probe_stats = train(probe, loader, lr=1e-3, steps=2, progress=False)
    trainable = count_parameters(lora)["trainable"]
    assert lora_stats["trainable_params"] == trainable and probe_stats["trainable_params"] == 32 * 2 + 2
    assert lora_stats["memory_mb"]["gradients"] == trainable * 4 / MB
    assert lora_stats["memory_mb"]["optimizer"] == 2 * trainable * 4 / MB
    assert lora_stats["memory_mb"]["weights"] == probe_stats["memory_mb"]["weights"] + (trainable - 66) * 4 / MB
    # no backward through a frozen backbone: a probe keeps only the head's input, LoRA every layer's activations
    assert 0 < probe_stats["memory_mb"]["activations"] < lora_stats["memory_mb"]["activations"] / 10
    assert lora_stats["adapter_bytes"] == (save_adapter(lora, tmp_path) / "adapter.safetensors").stat().st_size
    assert 66 * 4 < probe_stats["adapter_bytes"] < 66 * 4 + 1000  # the head's tensors and a small header
    assert lora_stats["seconds_per_step"] > 0 and lora_stats["peak_rss_mb"] > 0
