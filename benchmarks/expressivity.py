"""What the pretrained weights bring: four methods on MiniLM with random weights, under the comparison's protocol.

    python benchmarks/expressivity.py          → data/results/expressivity.json (resumes if interrupted)
    python benchmarks/expressivity.py --quick  2 methods, a few steps, into a temporary folder (a smoke test)

The CS324 notes observe that with all-zero (here: random) weights, prompt and prefix tuning could do nothing: a
lightweight method only steers what the frozen model already computes. The benchmark trains a linear probe (mean
pooling), prompt tuning (k = 20), LoRA r = 8 (query, value) and full fine-tuning on a MiniLM of the same shape whose
weights are drawn as transformers initialises a new BertModel (seed 0; the tokenizer is MiniLM's), under exactly
compare_methods.py's protocol: the same data and splits, a learning-rate search per method (4 rates, extended past
an edge), the same final budget (up to 4 epochs, early stopping), test read once per final run; one seed, since
the gaps it measures are tens of points, not tenths. The pretrained side of each pair is compare_methods.py's own
runs of the same configuration, read from compare_methods.json.
"""
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import compare_methods as cm  # noqa: E402  (same settings, same data preparation)

from minipeft.lab import load_encoder  # noqa: E402
from minipeft.lab.compare import compare  # noqa: E402

PAIRED = ["linear probe (mean)", "prompt tuning k=20", "LoRA r=8", "full fine-tuning"]
RANDOM = " (random weights)"


def random_like(backbone, seed: int = 0):
    """A model of `backbone`'s class and config with freshly initialised weights (as from_config would draw them)."""
    torch.manual_seed(seed)
    return type(backbone)(backbone.config).eval()


def methods(search_grids: bool = True) -> list[dict]:
    """The compared configurations, relabelled for the random base, with the comparison's grids (the search
    extends them past either end while the best rate sits there). search_grids=False: 2 rates each (smoke test)."""
    configs = [{**cm.BY_LABEL[label], "label": label + RANDOM} for label in PAIRED]
    return configs if search_grids else [{**c, "lrs": c["lrs"][1:3]} for c in configs]


def main(argv=None):
    args, task = cm.start(__doc__, argv)
    configs, settings, search, final, data = methods(), dict(cm.SETTINGS, seeds=1), cm.SEARCH, cm.FINAL, dict(task)
    out = cm.ROOT / "data" / "results" / "expressivity.json"
    if args.quick:
        configs, out = methods(search_grids=False)[2:], Path(tempfile.mkdtemp()) / "expressivity.json"
        data = cm.quick_data(task)
        search, final = {"epochs": 1, "eval_every": 1}, {"epochs": 1, "eval_every": 1, "patience": 2}
    backbone, tokenizer = load_encoder()
    results = compare(configs, data, ["text"], random_like(backbone), tokenizer, out, search=search, final=final,
                      reference="full fine-tuning" + RANDOM, task="rotten_tomatoes",
                      model="all-MiniLM-L6-v2 shape, random weights (seed 0)", threads=torch.get_num_threads(),
                      **settings)
    for row in results["summary"]:
        print(f"{row['label']:<40} lr {row['lr']:g}  test {100 * row['test_mean']:.1f}")
    return out


if __name__ == "__main__":
    main()
