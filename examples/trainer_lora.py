"""LoRA on Rotten Tomatoes with transformers.Trainer (minipeft.trainer.AdapterTrainer), in one process or several.

    python examples/trainer_lora.py --steps 20                            one process (a GPU if there is one)
    torchrun --nproc_per_node 2 examples/trainer_lora.py --steps 20       2 processes: PyTorch DDP (gloo on CPUs,
                                                                          NCCL on GPUs: one process per GPU)
    accelerate launch --multi_gpu --num_processes 2 examples/trainer_lora.py --steps 20
                                                                          the same through accelerate; on CPUs too
                                                                          (it starts them with torchrun; with --cpu
                                                                          it would start a single process)

Every process reads its own per_device_train_batch_size rows of each global batch and DDP averages the gradients,
so the weights stay the same everywhere. The first process then writes the adapter twice: minipeft's folder
(save_adapter) and Hugging Face peft's (export_peft), and prints the validation accuracy.
"""
import argparse
import math
from pathlib import Path

import torch
from transformers import TrainingArguments

import minipeft as mp
from minipeft.batching import make_loader
from minipeft.lab import load_encoder, load_task, subsample
from minipeft.train import evaluate
from minipeft.trainer import AdapterTrainer


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="optimizer steps")
    parser.add_argument("--batch", type=int, default=16, help="rows per process and step")
    parser.add_argument("--rows", type=int, default=640, help="training rows (a label-balanced subsample)")
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--out", type=Path, default=Path("runs/trainer_lora"))
    options = parser.parse_args(argv)

    backbone, tokenizer = load_encoder(device="cpu")  # Trainer puts it on this process's device
    torch.manual_seed(0)  # the head's initial weights: the same in every process
    model = mp.apply_lora(mp.Classifier(backbone, num_labels=2, pooling="mean"), ["query", "value"], r=8, alpha=16)
    data = load_task("rotten_tomatoes")
    rows = subsample(data["train"], options.rows)
    arguments = TrainingArguments(
        str(options.out / "checkpoints"), per_device_train_batch_size=options.batch, max_steps=options.steps,
        learning_rate=options.lr, warmup_steps=math.ceil(0.1 * options.steps), lr_scheduler_type="linear",
        weight_decay=0.0, remove_unused_columns=False,  # the collator reads the raw "text" column
        ddp_find_unused_parameters=False,  # only the active adapter trains: every trainable tensor gets a gradient
        use_cpu=not torch.cuda.is_available(),  # on CPUs, several processes need it (accelerate then uses gloo)
        save_strategy="no", logging_steps=max(1, options.steps // 5), report_to="none", seed=0)
    trainer = AdapterTrainer(model=model, args=arguments, train_dataset=rows,
                             data_collator=make_loader(rows, tokenizer, "text", max_length=64).collate_fn)
    trainer.train()
    if trainer.is_world_process_zero():
        mp.save_adapter(model, options.out / "adapter")
        mp.export_peft(model, options.out / "peft")
        validation = make_loader(subsample(data["validation"], 200), tokenizer, "text", batch_size=64, max_length=64)
        print(f"{trainer.args.world_size} process(es), {options.steps} steps of {trainer.args.world_size} × "
              f"{options.batch} rows: validation accuracy {evaluate(model, validation):.3f}; adapter in "
              f"{options.out / 'adapter'}, peft folder in {options.out / 'peft'}")


if __name__ == "__main__":
    main()
