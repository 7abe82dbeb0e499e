"""Insert issue 11's section into notebooks/07_lora_bitfit_ia3.ipynb, before its exercises: LoRA trained by
transformers.Trainer (minipeft.trainer.AdapterTrainer), written with export_peft, loaded by peft's own
PeftModel.from_pretrained, and a check cell asserting equal logits within 1e-5.

    python notebook_section_11.py                 # edits the notebook in place (outputs of other cells are kept)
    python notebook_section_11.py --check         # says whether the section is there, changes nothing

Idempotent: the inserted cells carry {"minipeft": {"section": "issue-11"}} in their metadata; a second run first
removes them, then inserts the current version. If the "## Exercises" heading shares a markdown cell with the text
before it, that cell is split so the section can go between them. The new cells have no outputs until the notebook
is run (make notebooks / notebooks/run_notebooks.py 07).
"""
import sys
from pathlib import Path

import nbformat

NOTEBOOK = Path(__file__).resolve().parent / "notebooks" / "07_lora_bitfit_ia3.ipynb"
MARKER = {"section": "issue-11"}
HEADING = "## Exercises"

INTRO = """## 9 · The same adapter with Hugging Face's tools
minipeft's adapters are plain PyTorch modules, so the ecosystem's tools take them as they are:

- **`transformers.Trainer`** trains the `Classifier` with LoRA unchanged. `minipeft.trainer.AdapterTrainer` is
  `Trainer` with two differences: its checkpoints hold the adapter (`save_adapter`), not a copy of the frozen
  MiniLM, and it keeps dropout off in the frozen base, as `train` does. The tests check that it ends with the same
  weights as `minipeft.train.train` on the same batches, and that 4 accumulated batches of 8 give the gradient of
  one batch of 32.
- **`mp.export_peft`** writes the adapter as a Hugging Face peft folder (`adapter_config.json` with every
  hyper-parameter written out, `adapter_model.safetensors` under peft's names), which
  `peft.PeftModel.from_pretrained` loads; `mp.import_peft` reads such a folder back.

The same script runs on several processes or GPUs, with PyTorch's own engine (DDP):
`torchrun --nproc_per_node 2 examples/trainer_lora.py` (README: *Beyond one laptop*)."""

TRAIN = """import math, json, tempfile
from pathlib import Path
from transformers import TrainingArguments
from minipeft.trainer import AdapterTrainer
from minipeft.train import evaluate, to_device, model_device

TRAINER_STEPS = course.pick(20, 2)
torch.manual_seed(0)  # the head's initial weights
hf_model = mp.apply_lora(mp.Classifier(copy.deepcopy(encoder), num_labels=2, pooling="mean"), ["query", "value"],
                         r=8, alpha=16)
hf_rows = subsample(rt["train"], course.pick(TRAINER_STEPS * BATCH, 32))
runs = Path(tempfile.mkdtemp(prefix="nb07-trainer-"))
arguments = TrainingArguments(
    str(runs / "checkpoints"), per_device_train_batch_size=BATCH, max_steps=TRAINER_STEPS, learning_rate=LR["lora"],
    warmup_steps=math.ceil(0.1 * TRAINER_STEPS), lr_scheduler_type="linear", weight_decay=0.0,
    remove_unused_columns=False,  # minipeft's collator tokenises the raw "text" column itself
    use_cpu=not torch.cuda.is_available(), save_strategy="no", logging_strategy="no", report_to="none",
    disable_tqdm=True, seed=0)
trainer = AdapterTrainer(model=hf_model, args=arguments, train_dataset=hf_rows,
                         data_collator=make_loader(hf_rows, tok, "text", max_length=MAX_LEN).collate_fn)
trainer.train()
accuracy = evaluate(hf_model, val_loader)
print(f"Trainer: {TRAINER_STEPS} steps of {BATCH} snippets, validation accuracy {accuracy:.3f}")"""

EXPORT = """import peft
folder = mp.export_peft(hf_model, runs / "peft")
config = json.loads((folder / "adapter_config.json").read_text())
print(sorted(p.name for p in folder.iterdir()), {k: config[k] for k in ("peft_type", "r", "lora_alpha",
                                                                      "target_modules", "modules_to_save")})
fresh = mp.Classifier(copy.deepcopy(encoder), num_labels=2, pooling="mean")  # untouched MiniLM, a new random head
peft_model = peft.PeftModel.from_pretrained(fresh, folder).eval()           # peft's loader, from the files on disk
print(type(peft_model).__name__, "around", type(peft_model.get_base_model()).__name__)"""

CHECK = """**Check.** peft's model, loaded from the files alone, gives minipeft's logits on a validation batch
(≤ 1e-5), and they are not the untrained head's."""

CHECK_CODE = """hf_model.eval()
batch = to_device({k: v for k, v in next(iter(val_loader)).items() if k != "labels"}, model_device(hf_model))
with torch.no_grad():
    ours, theirs = hf_model(**batch)["logits"], peft_model(**batch)["logits"]
    untrained = mp.Classifier(copy.deepcopy(encoder), num_labels=2, pooling="mean")(**batch)["logits"]
gap = (ours - theirs).abs().max().item()
assert gap <= 1e-5, gap
assert (ours - untrained).abs().max().item() > 1e-3
print(f"✓ peft.PeftModel.from_pretrained gives minipeft's logits (largest difference {gap:.1e})")"""


def section_cells() -> list:
    """The section's cells, each marked (so a later run finds and replaces them), with stable ids."""
    cells = [nbformat.v4.new_markdown_cell(INTRO), nbformat.v4.new_code_cell(TRAIN),
             nbformat.v4.new_code_cell(EXPORT), nbformat.v4.new_markdown_cell(CHECK),
             nbformat.v4.new_code_cell(CHECK_CODE)]
    for index, cell in enumerate(cells):
        cell.metadata["minipeft"] = dict(MARKER)
        cell["id"] = f"issue-11-{index}"
    return cells


def exercises_index(nb) -> int:
    """Index of the cell that starts with the exercises heading, splitting a markdown cell that holds it further
    down (the text before stays in the original cell)."""
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "markdown" or HEADING not in cell.source:
            continue
        before, _, after = cell.source.partition(HEADING)
        if before.strip():
            cell.source = before.rstrip() + "\n"
            exercises = nbformat.v4.new_markdown_cell(HEADING + after)
            exercises["id"] = "exercises-07"
            nb.cells.insert(index + 1, exercises)
            return index + 1
        return index
    raise ValueError(f"{NOTEBOOK.name} has no {HEADING!r} heading to insert the section before")


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    nb = nbformat.read(NOTEBOOK, as_version=4)
    present = [c for c in nb.cells if c.metadata.get("minipeft") == MARKER]
    if "--check" in argv:
        print(f"{NOTEBOOK.name}: section {'present' if present else 'absent'} ({len(present)} cells)")
        return
    nb.cells = [c for c in nb.cells if c.metadata.get("minipeft") != MARKER]
    index = exercises_index(nb)
    nb.cells[index:index] = section_cells()
    nbformat.validate(nb)
    nbformat.write(nb, NOTEBOOK)
    print(f"{NOTEBOOK.name}: {'replaced' if present else 'inserted'} {len(section_cells())} cells before "
          f"{HEADING!r} (cell {index})")


if __name__ == "__main__":
    main()
