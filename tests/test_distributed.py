"""Several processes with an existing engine, not our own: PyTorch DDP on gloo, 2 CPU processes started by torchrun
(in fresh interpreters: forking this test process could deadlock OpenMP), driven by transformers.Trainer. After 3
steps both ranks hold the same adapter, equal to minipeft.train on the same global batches in one process.

    python -m torch.distributed.run --standalone --nproc_per_node 2 tests/test_distributed.py FOLDER   # the workers
"""
import math
import os
import subprocess
import sys
import warnings
from pathlib import Path

import datasets
import torch
from safetensors.torch import load_file, save_file
from transformers import TrainingArguments

import minipeft as mp
from minipeft.batching import make_loader
from minipeft.lab import models
from minipeft.train import train
from minipeft.trainer import AdapterTrainer

TEXTS = ["a good film", "bad", "great acting, a fine plot and a score that stays with you", "terrible and boring"]
STEPS = 3


def two_adapters():
    """A LoRA classifier holding two adapters, "a" and then "b" (active): only "b" and the head may train, or DDP
    (find_unused_parameters=False) fails on the parameters of "a", which get no gradient."""
    torch.manual_seed(0)
    model = mp.Classifier(models.tiny_bert())
    mp.apply_lora(model, ["query"], r=2, name="a")
    return mp.apply_lora(model, ["query", "value"], r=2, name="b")


def trainable(model) -> dict:
    return {n: p.detach().contiguous().clone() for n, p in model.named_parameters() if p.requires_grad}


def rank_worker(folder):
    """One DDP process: 2 rows of the 4 per step (Trainer shards each global batch), then its weights to a file."""
    torch.set_num_threads(1)
    rows = datasets.Dataset.from_dict({"text": TEXTS, "label": [1, 0, 1, 0]})
    collate = make_loader(rows, models.encoder_tokenizer(), "text", group_by_length=False).collate_fn
    args = TrainingArguments(folder, per_device_train_batch_size=2, max_steps=STEPS, learning_rate=1e-2,
                             warmup_steps=1, lr_scheduler_type="linear", weight_decay=0.0,
                             use_cpu=True,  # with torchrun on CPUs: accelerate then takes the gloo backend
                             ddp_find_unused_parameters=False, ddp_backend="gloo", report_to="none",
                             save_strategy="no", logging_strategy="no", disable_tqdm=True,
                             remove_unused_columns=False, seed=0)
    model = two_adapters()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = AdapterTrainer(model=model, args=args, train_dataset=rows, data_collator=collate,
                                 adapter_name="b")
        assert trainer.accelerator.num_processes == 2 and trainer.accelerator.distributed_type == "MULTI_CPU"
        trainer.train()
    save_file(trainable(model), os.path.join(folder, f"rank{trainer.args.process_index}.safetensors"))


def test_two_processes_train_like_one_on_the_same_global_batches(tmp_path, bert_tokenizer):
    """Within 1e-5 of the one-process run (the ranks pad their 2-row batches differently from the 4-row batch:
    float rounding); the ranks agree bit for bit (DDP averages the same gradients on both)."""
    root = Path(__file__).resolve().parents[1]
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]),
                   "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           __file__, str(tmp_path)], env=environment, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    ranks = [load_file(tmp_path / f"rank{i}.safetensors") for i in range(2)]
    assert ranks[0].keys() == ranks[1].keys() and all(torch.equal(ranks[0][k], ranks[1][k]) for k in ranks[0])

    rows = datasets.Dataset.from_dict({"text": TEXTS, "label": [1, 0, 1, 0]})
    model = two_adapters()
    start = trainable(model)
    train(model, make_loader(rows, bert_tokenizer, "text", batch_size=4, group_by_length=False), lr=1e-2,
          steps=STEPS, warmup=1 / STEPS, precision="fp32", progress=False)
    assert math.ceil(1 / STEPS * STEPS) == 1  # the same single warm-up step as Trainer's warmup_steps=1
    one = trainable(model)
    assert ranks[0].keys() == one.keys() and all(".adapters.a." not in k for k in one)
    assert max((ranks[0][k] - one[k]).abs().max().item() for k in one) <= 1e-5
    assert max((one[k] - start[k]).abs().max().item() for k in one) > 1e-3


if __name__ == "__main__":  # a worker process, started by torch.distributed.run (see the test above)
    rank_worker(sys.argv[1])
