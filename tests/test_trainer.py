"""transformers.Trainer with minipeft adapters (minipeft/trainer.py): it trains like minipeft.train on the same
batches, gradient accumulation equals one big batch, checkpoints hold the adapter only and resume, and the causal-LM
loss skips the virtual tokens of a prompt."""
import math
import warnings

import datasets
import pytest
import torch
from method_checks import outputs
from transformers import TrainerCallback, TrainingArguments

import minipeft as mp
from minipeft.batching import make_loader
from minipeft.lab import models
from minipeft.train import train
from minipeft.trainer import AdapterTrainer, causal_lm_loss

TEXTS = ["a good film", "bad", "great acting, a fine plot and a score that stays with you", "terrible and boring",
         "loved it", "I hated every minute of it", "fine", "a waste of two hours"]
REVIEWS = {"prompt": ["Review:", "Verdict:", "In short:", "Review:", "Verdict:", "In short:", "Review:", "Verdict:"],
           "target": [" " + t for t in TEXTS]}


def classification(tokenizers):
    """A LoRA classifier on tiny BERT (its own dropout 0.1 stays in: both trainers must turn it off in the frozen
    base), its rows and minipeft's collator (it tokenises the raw text rows)."""
    torch.manual_seed(0)
    model = mp.apply_lora(mp.Classifier(models.tiny_bert()), r=2)
    rows = datasets.Dataset.from_dict({"text": TEXTS, "label": [1, 0] * 4})
    return model, rows, make_loader(rows, tokenizers[0], "text", batch_size=8, group_by_length=False), {}


def causal_lm(tokenizers):
    """Prompt tuning on tiny Llama: k = 3 virtual tokens in front, so the logits are 3 positions longer than the
    labels; the loss is causal_lm_loss."""
    torch.manual_seed(0)
    model = mp.apply_prompt_tuning(models.tiny_llama(), k=3)
    rows = datasets.Dataset.from_dict(REVIEWS)
    loader = make_loader(rows, tokenizers[1], ("prompt", "target"), batch_size=8, task="causal_lm",
                         group_by_length=False)
    return model, rows, loader, {"compute_loss_func": causal_lm_loss}


TASKS = {"classification": classification, "causal_lm": causal_lm}


@pytest.fixture
def tokenizers(bert_tokenizer, llama_tokenizer):
    return bert_tokenizer, llama_tokenizer


def arguments(folder, **overrides) -> TrainingArguments:
    """What minipeft.train does: linear warm-up and decay, AdamW without weight decay, gradient norm clipped at
    1.0, fp32 on the CPU; no logging, no checkpoints unless asked."""
    settings = dict(per_device_train_batch_size=8, learning_rate=1e-2, lr_scheduler_type="linear", weight_decay=0.0,
                    max_grad_norm=1.0, report_to="none", save_strategy="no", use_cpu=True,
                    remove_unused_columns=False, disable_tqdm=True, logging_strategy="no", seed=0)
    return TrainingArguments(str(folder), **{**settings, **overrides})


def run_trainer(model, rows, loader, folder, extra, resume=None, **overrides):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = AdapterTrainer(model=model, args=arguments(folder, **overrides), train_dataset=rows,
                                 data_collator=loader.collate_fn, **extra)
        trainer.train(resume_from_checkpoint=resume)
    return trainer


def trainable(model) -> dict:
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("task", list(TASKS))
def test_trainer_trains_like_minipeft_train(task, tokenizers, tmp_path):
    """The same 8 rows as one batch at every step (Trainer's shuffling only reorders the rows inside it), 5 steps
    with 1 of warm-up: the adapter weights agree within 1e-5 (float rounding of the reordered rows: ~1e-7 seen),
    after moving by ~1e-2."""
    model, rows, loader, extra = TASKS[task](tokenizers)
    start = trainable(model)
    ours, _ = TASKS[task](tokenizers)[0], None
    train(ours, loader, lr=1e-2, steps=5, warmup=0.2, task=task, precision="fp32", progress=False)
    run_trainer(model, rows, loader, tmp_path, extra, max_steps=5, warmup_steps=math.ceil(0.2 * 5))
    theirs, reference = trainable(model), trainable(ours)
    assert theirs.keys() == reference.keys()
    assert max((theirs[n] - reference[n]).abs().max().item() for n in theirs) <= 1e-5
    assert max((reference[n] - start[n]).abs().max().item() for n in theirs) > 1e-3


class KeepGradients(TrainerCallback):
    """Records the trainable gradients Trainer is about to step with (after accumulation)."""

    def __init__(self, model):
        self.model, self.gradients = model, None

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        self.gradients = {n: p.grad.clone() for n, p in self.model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("task", list(TASKS))
def test_gradient_accumulation_equals_one_batch_four_times_larger(task, tokenizers, tmp_path):
    """4 accumulated batches of 2 rows give the gradient of one batch of 8 (clipping off, to see the raw sum).
    A Classifier's mean loss must be divided by the 4 steps (accepts_loss_kwargs = False); causal_lm_loss divides
    its sum by the target tokens of all 4 batches. Within 1e-6 of gradients of ~1e-1 (float rounding; the rows
    are padded differently in the small batches)."""
    gradients = []
    for batch_size, steps in [(8, 1), (2, 4)]:
        model, rows, loader, extra = TASKS[task](tokenizers)
        keep = KeepGradients(model)
        run_trainer(model, rows, loader, tmp_path, {**extra, "callbacks": [keep]}, max_steps=1, max_grad_norm=0,
                    per_device_train_batch_size=batch_size, gradient_accumulation_steps=steps)
        gradients.append(keep.gradients)
    one, accumulated = gradients
    assert max((one[n] - accumulated[n]).abs().max().item() for n in one) <= 1e-6
    assert max(g.abs().max().item() for g in one.values()) > 1e-2


class StopAfter(TrainerCallback):
    """Interrupts training after `steps` optimizer steps (the schedule still counts to max_steps)."""

    def __init__(self, steps: int):
        self.steps = steps

    def on_step_end(self, args, state, control, **kwargs):
        control.should_training_stop = state.global_step >= self.steps


def test_checkpoints_hold_the_adapter_only_and_resume(tokenizers, tmp_path):
    """A Classifier on tiny Llama (tied embeddings: Trainer's own save of a plain nn.Module fails on them): the
    checkpoint holds the adapter and the head, not the model; load_adapter rebuilds the model from it; resuming from
    it at step 2 of 4 ends where the uninterrupted run ends (optimizer, schedule and data order come back too)."""
    def build():
        torch.manual_seed(0)
        return mp.apply_lora(mp.Classifier(models.tiny_llama(), pooling="last"), ["q_proj", "v_proj"], r=2)
    rows = datasets.Dataset.from_dict({"text": TEXTS, "label": [1, 0] * 4})
    loader = make_loader(rows, tokenizers[1], "text", batch_size=4, group_by_length=False)
    settings = dict(per_device_train_batch_size=4, max_steps=4, warmup_steps=1)
    straight = build()
    run_trainer(straight, rows, loader, tmp_path / "straight", {}, **settings)
    interrupted = build()
    run_trainer(interrupted, rows, loader, tmp_path / "run", {"callbacks": [StopAfter(2)]}, **settings,
                save_strategy="steps", save_steps=2)
    checkpoint = tmp_path / "run" / "checkpoint-2"
    files = {p.name for p in checkpoint.iterdir()}
    assert {"adapter.safetensors", "minipeft_adapter.json"} <= files
    assert not {"model.safetensors", "pytorch_model.bin", "training_args.bin"} & files
    adapter_bytes = (checkpoint / "adapter.safetensors").stat().st_size
    assert adapter_bytes < 4 * sum(p.numel() for p in build().parameters()) / 100  # under 1 % of the model
    batch = dict(tokenizers[1](TEXTS[:3], return_tensors="pt", padding=True))
    rebuilt = mp.load_adapter(mp.Classifier(models.tiny_llama(), pooling="last"), checkpoint)
    assert torch.equal(outputs(rebuilt, batch), outputs(interrupted.eval(), batch))
    resumed = build()
    run_trainer(resumed, rows, loader, tmp_path / "run", {}, **settings, resume=str(checkpoint))
    final, expected = trainable(resumed), trainable(straight)
    assert max((final[n] - expected[n]).abs().max().item() for n in final) <= 1e-6


def test_the_adapter_to_checkpoint_must_be_named_when_there_are_several(tmp_path):
    model = mp.apply_lora(mp.Classifier(models.tiny_bert()), r=2, name="a")
    mp.apply_lora(model, r=2, name="b")
    with pytest.raises(ValueError, match=r"\['a', 'b'\].*adapter_name"):
        AdapterTrainer(model=model, args=arguments(tmp_path))
    assert AdapterTrainer(model=model, args=arguments(tmp_path), adapter_name="b").adapter_name == "b"


def test_causal_lm_loss_reads_the_last_positions_and_normalises_over_the_whole_batch():
    torch.manual_seed(0)
    logits = torch.randn(2, 3 + 4, 11)  # 3 virtual positions in front of 4 real ones
    labels = torch.tensor([[-100, 5, 6, -100], [-100, -100, 7, 8]])
    targets = labels[:, 1:]
    by_hand = torch.nn.functional.cross_entropy(logits[:, 3:-1].flatten(0, 1), targets.flatten(), ignore_index=-100,
                                                reduction="sum")
    torch.testing.assert_close(causal_lm_loss({"logits": logits}, labels), by_hand / 4)
    torch.testing.assert_close(causal_lm_loss({"logits": logits}, labels, num_items_in_batch=10), by_hand / 10)
