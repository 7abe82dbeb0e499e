"""Hugging Face transformers.Trainer with minipeft adapters: a Classifier or a causal LM with any method, trained by
Trainer unchanged, on one process or several (torchrun / accelerate launch start the processes, PyTorch DDP keeps
their weights equal; minipeft adds nothing to that).

    args = TrainingArguments("runs/x", remove_unused_columns=False, per_device_train_batch_size=16, ...)
    trainer = AdapterTrainer(model=model, args=args, train_dataset=rows,
                             data_collator=make_loader(rows, tokenizer, "text").collate_fn)
    trainer.train()                                    # checkpoints hold the adapter only (save_adapter)

What Trainer needs, and where it is handled:
    the loss        a Classifier returns {"loss", "logits"}, the loss a mean over the batch; its accepts_loss_kwargs =
                    False tells Trainer to divide it by the gradient-accumulation steps, so 4 accumulated batches of
                    8 give the gradient of one batch of 32
    a causal LM     compute_loss_func=causal_lm_loss: minipeft's loss, which reads the last n positions, whatever
                    virtual tokens a prompt put in front (the model's own loss also works: prompt tuning pads the
                    labels over its virtual tokens), normalised over the target tokens of the whole accumulated batch
    checkpoints     Trainer saves a model that is no PreTrainedModel as its whole state dict, which fails on SmolLM2's
                    tied embeddings and would store the frozen base in every checkpoint; AdapterTrainer writes the
                    adapter with save_adapter and reads it back with load_adapter (resuming, load_best_model_at_end).
                    The optimizer and scheduler states beside it are Trainer's own (torch.save); save_only_model=True
                    leaves them out
    the columns     minipeft's collator tokenises raw text rows: remove_unused_columns=False keeps the columns it reads
    dropout         as in minipeft.train, base_dropout=None turns dropout off inside a frozen base (PEFT methods)
    processes       only active adapters train (core.train_active_adapters), so DDP meets no trainable parameter
                    without a gradient; Trainer averages the gradients of equal per-process batches
"""
from pathlib import Path

from torch.nn import functional as F
from transformers import Trainer

from .core import configs, trains_base
from .saving import load_adapter, save_adapter
from .train import lined_up, set_train_mode


def causal_lm_loss(outputs, labels, num_items_in_batch=None):
    """Next-token cross-entropy on the target tokens (labels ≠ -100), read off the last labels.shape[1] positions
    of the logits as minipeft.train does, so virtual tokens in front (prompt tuning) are skipped. Summed and divided
    by `num_items_in_batch`, the target tokens of the whole accumulated batch, when Trainer passes it (a
    compute_loss_func is trusted to normalise itself); the mean over this batch otherwise."""
    logits, targets = lined_up(outputs["logits"], labels, "causal_lm")
    loss = F.cross_entropy(logits.float(), targets, ignore_index=-100, reduction="sum")
    return loss / (num_items_in_batch if num_items_in_batch is not None else (targets != -100).sum())


class AdapterTrainer(Trainer):
    """transformers.Trainer that saves and loads adapter `adapter_name` (default: the only adapter recorded on the
    model) instead of the whole model, and keeps dropout off in a frozen base like minipeft.train (`base_dropout`:
    None = on only if base parameters train). Other arguments are Trainer's. Raises ValueError when the model holds
    several adapters and adapter_name is not given, or an adapter_name the model does not hold."""

    def __init__(self, *args, adapter_name: str | None = None, base_dropout: bool | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        names = sorted(configs(self.model))
        if adapter_name is None and len(names) != 1 or adapter_name is not None and adapter_name not in names:
            raise ValueError(f"the model holds the adapters {names}: pass adapter_name= the one to checkpoint")
        self.adapter_name = adapter_name or names[0]
        self.base_dropout = trains_base(self.model) if base_dropout is None else bool(base_dropout)

    def compute_loss(self, model, inputs, *args, **kwargs):
        """Trainer's loss; in training, first dropout off in a frozen base (Trainer has just put all in train mode)."""
        if model.training and not self.base_dropout:
            set_train_mode(self.model, base_dropout=False)
        return super().compute_loss(model, inputs, *args, **kwargs)

    def _save(self, output_dir: str | None = None, state_dict=None) -> None:
        """Write the adapter (save_adapter), not the model: what checkpoints and save_model hold (not the tokenizer,
        nor Trainer's training_args.bin, a pickle)."""
        if self.args.should_save:
            save_adapter(self.model, Path(output_dir or self.args.output_dir), self.adapter_name)

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model=None) -> None:
        """Resuming: copy the checkpoint's adapter back into the model (load_adapter)."""
        load_adapter(model or self.model, resume_from_checkpoint, self.adapter_name)

    def _load_best_model(self) -> None:
        """load_best_model_at_end: copy the best checkpoint's adapter back into the model."""
        load_adapter(self.model, self.state.best_model_checkpoint, self.adapter_name)
