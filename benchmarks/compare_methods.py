"""Every method of the course on Rotten Tomatoes with MiniLM, each trained until it stops learning, under one protocol.

    python benchmarks/compare_methods.py          → data/results/compare_methods.json and .png (resumes if stopped)
    python benchmarks/compare_methods.py --quick  2 methods, a few steps, into a temporary folder (a smoke test)

Data: the whole training split (10,207 snippets, split by movie), the whole validation split for every choice, the
whole test split (1,265 snippets) read only by the final runs. MiniLM, mean pooling unless noted, batch 32, snippets
cut at 64 tokens, minipeft's training defaults (length-grouped batches, bf16 autocast where the CPU has bf16 units,
no dropout inside a frozen base: benchmarks/speedups.py shows what each saves and that it costs no accuracy).

The protocol (minipeft.lab.compare):
    search  every method: seed 0 at 4 log-spaced learning rates (factor √10), 1 epoch each (SEARCH), validation
            twice, best kept; when the best rate is at an end of the grid, one more rate beyond it, until the
            best is inside. The search runs on 1 epoch, shorter than the final runs, so that all of it fits.
    final   seeds 0, 1, 2 at the chosen rate, up to FINAL["epochs"] epochs (the budget read off
            data/results/convergence.json: the epoch after which no method's validation accuracy rose), validation
            4 times an epoch, the best weights kept, early stopping after a whole epoch without improvement.
    report  test accuracy mean ± std over the 3 seeds, and against full fine-tuning the paired difference on the
            same 1,265 test snippets with a 95 % bootstrap interval over snippets and seeds.
    robust  every final run also predicts the IMDB sample (200 reviews, cut at 256 tokens: another domain) and four
            perturbed copies of the test split (typos, lower case, a neutral sentence appended, a synonym:
            minipeft.lab.perturb), kept per run as "extra"; runs made before this was added (2026-12-04) have none.
    costs   one process, every method in turns over the same 8 training batches (3 rounds, the first a warm-up):
            seconds per step side by side, training memory (minipeft.lab.measure) and the adapter file's size.
Runs are written one by one; the final runs go seed by seed, so a stopped benchmark holds whole seeds. Each run
records the device it trained on. `--workers N` trains the final runs in N processes at once (workers.py): on one
GPU, 12 workers made all 63 final runs in under 8 minutes (an H200, 2026-12-04), where the 2-core CPU needs about
10 hours; `--only` and `--seeds` pick which runs. The search ran on the CPU.
"""
import argparse
import copy
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing
sys.path.insert(0, str(Path(__file__).resolve().parent))  # workers.py, beside this file
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

from minipeft.core import trains_base  # noqa: E402
from minipeft.lab import load_encoder, load_task, subsample  # noqa: E402
from minipeft.lab.compare import build, compare, merge, save, summarize  # noqa: E402
from minipeft.lab.course import threads  # noqa: E402
from minipeft.lab.measure import activation_bytes, adapter_bytes, memory_mb, time_steps_side_by_side  # noqa: E402
from minipeft.lab.perturb import perturbed_tests  # noqa: E402
from minipeft.lab.plots import plot_comparison  # noqa: E402
from minipeft.batching import make_loader  # noqa: E402
from workers import in_workers  # noqa: E402


def grid(exponent: float, values: int = 4) -> list[float]:
    """`values` learning rates from 10^exponent up, a factor √10 apart (3 significant digits): grid(-4) is
    [1e-4, 3.16e-4, 1e-3, 3.16e-3]."""
    return [float(f"{10 ** (exponent + i / 2):.3g}") for i in range(values)]


ALL_LINEAR = (r"re:.*layer\.\d+\.(attention\.self\.(query|key|value)|attention\.output\.dense|intermediate\.dense"
              r"|output\.dense)")  # the six linears of every block, not the pooler
METHODS = [
    {"label": "linear probe (CLS)", "method": "probe", "classifier": {"pooling": "cls"}, "lrs": grid(-3)},
    {"label": "linear probe (mean)", "method": "probe", "lrs": grid(-3)},
    {"label": "MLP probe (CLS)", "method": "probe", "classifier": {"pooling": "cls", "head": "mlp"}, "lrs": grid(-3.5)},
    {"label": "MLP probe (mean)", "method": "probe", "classifier": {"head": "mlp"}, "lrs": grid(-3.5)},
    {"label": "full fine-tuning", "method": "finetune", "lrs": grid(-5)},
    {"label": "top-2 layers", "method": "finetune", "kwargs": {"top_k": 2}, "lrs": grid(-4.5)},
    {"label": "BitFit", "method": "bitfit", "lrs": grid(-3.5)},
    {"label": "prompt tuning k=20", "method": "prompt_tuning", "kwargs": {"k": 20, "init": "vocab"}, "lrs": grid(-3)},
    {"label": "P-tuning k=20", "method": "p_tuning", "kwargs": {"k": 20}, "lrs": grid(-3.5)},
    {"label": "deep prompts k=20", "method": "deep_prompt", "kwargs": {"k": 20}, "lrs": grid(-3)},
    {"label": "prefix tuning k=20", "method": "prefix_tuning", "kwargs": {"k": 20}, "lrs": grid(-3)},
    *[{"label": f"{placement.title()} adapters r={r}", "method": "bottleneck",
       "kwargs": {"r": r, "placement": placement}, "lrs": grid(-3.5)}
      for placement in ("houlsby", "pfeiffer") for r in (8, 64)],
    *[{"label": f"LoRA r={r}", "method": "lora", "kwargs": {"targets": ["query", "value"], "r": r, "alpha": 2 * r},
       "lrs": grid(-3.5)} for r in (1, 8, 64)],  # α = 2r: the same scale α/r = 2 for every rank
    {"label": "LoRA r=8 (all linear layers)", "method": "lora",
     "kwargs": {"targets": [ALL_LINEAR], "r": 8, "alpha": 16}, "lrs": grid(-3.5)},
    {"label": "(IA)³", "method": "ia3", "lrs": grid(-3)},
    {"label": "DoRA r=8", "method": "dora", "kwargs": {"targets": ["query", "value"], "r": 8, "alpha": 16},
     "lrs": grid(-3.5)},  # LoRA r=8's targets, rank and scale, plus one trained length per output row
]
BY_LABEL = {m["label"]: m for m in METHODS}
REFERENCE = "full fine-tuning"
IMDB_LENGTH = 256  # IMDB reviews are long: cut at 256 tokens, not the snippets' 64
SETTINGS = {"seeds": 3, "batch_size": 32, "max_length": 64}
SEARCH = {"epochs": 1, "eval_every": 160}  # 319 steps an epoch: validation twice
FINAL = {"epochs": 4, "eval_every": 80, "patience": 4}  # stop after a whole epoch without a better validation


def robustness_tests(task_test, imdb_test) -> dict:
    """What every final run also predicts: the IMDB sample (another domain) and the perturbed test snippets
    ({name: (dataset, max_length)}, minipeft.lab.perturb)."""
    tests = {"IMDB (out of domain)": (imdb_test, IMDB_LENGTH)}
    return tests | {name: (ds, SETTINGS["max_length"]) for name, ds in perturbed_tests(task_test).items()}


def start(doc: str, argv=None, configure=None):
    """The benchmarks' common start: parse --quick (and what `configure(parser)` adds), set the threads, load
    Rotten Tomatoes. Returns (args, task)."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few steps on a few rows (a smoke test)")
    if configure:
        configure(parser)
    args = parser.parse_args(argv)
    torch.set_num_threads(threads())
    return args, load_task("rotten_tomatoes")


def quick_data(task) -> dict:
    """The smoke tests' data: 64 training, 32 validation and 32 test snippets."""
    return {"train": subsample(task["train"], 64), "validation": subsample(task["validation"], 32),
            "test": subsample(task["test"], 32)}


def measure_costs(methods, data, backbone, tokenizer, settings, progress=True) -> dict:
    """Seconds per training step side by side, training memory and adapter file size of every method."""
    loader = make_loader(data["train"], tokenizer, ["text"], settings["batch_size"], settings["max_length"],
                         shuffle=True, seed=0)
    batches = [batch for batch, _ in zip(loader, range(8))]
    models = {}
    for config in methods:
        torch.manual_seed(0)
        models[config["label"]] = build(config, backbone)
    load = os.getloadavg()[0]
    seconds = time_steps_side_by_side({label: {"model": m, "batches": batches} for label, m in models.items()},
                                      rounds=3, progress=progress)
    longest = max(batches, key=lambda b: b["input_ids"].numel())
    costs = {}
    for label, model in models.items():
        trains = sum(p.numel() for p in model.parameters() if p.requires_grad)
        base_dropout = trains_base(model)
        costs[label] = {"seconds_per_step": statistics.median(seconds[label]), "trainable_params": trains,
                        "memory_mb": memory_mb(model, activation_bytes(model, longest, precision="bf16",
                                                                        base_dropout=base_dropout)),
                        "adapter_bytes": adapter_bytes(model)}
    return {"methods": costs, "load_average_before": load, "load_average_after": os.getloadavg()[0],
            "batches": len(batches), "tokens_per_batch": statistics.fmean(b["input_ids"].shape[1] for b in batches),
            "utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()), "threads": torch.get_num_threads()}


def configuration(quick: bool) -> dict:
    """The methods, data, budgets and settings of the comparison (--quick: 2 methods, 2 rates, a few rows)."""
    task = load_task("rotten_tomatoes")
    conf = {"methods": METHODS, "settings": dict(SETTINGS), "search": SEARCH, "final": FINAL, "data": dict(task)}
    if quick:
        conf |= {"methods": [{**BY_LABEL[label], "lrs": BY_LABEL[label]["lrs"][1:3]} for label in (REFERENCE,
                                                                                                   "LoRA r=8")],
                 "data": quick_data(task), "search": {"epochs": 1, "eval_every": 1},
                 "final": {"epochs": 1, "eval_every": 1, "patience": 2}}
        conf["settings"].update(seeds=2)
    imdb = load_task("imdb")["test"]
    conf["extra"] = robustness_tests(conf["data"]["test"], subsample(imdb, 16) if quick else imdb)
    return conf


def run_compare(conf, methods, backbone, tokenizer, out, threads, **options) -> dict:
    """minipeft.lab.compare.compare with this benchmark's data, budgets and settings."""
    return compare(methods, conf["data"], ["text"], backbone, tokenizer, out, search=conf["search"],
                   final=conf["final"], reference=REFERENCE, task="rotten_tomatoes", model="all-MiniLM-L6-v2",
                   threads=threads, extra_tests=conf["extra"], **conf["settings"], **options)


def merge_parts(conf, out: Path, parts: list[Path], summary: bool = True) -> dict:
    """Merge the workers' files into `out` (the parent process is the only one that writes it) and, unless
    summary=False, summarize (the bootstrap takes seconds: a parallel run summarizes once, at its end)."""
    results = json.loads(out.read_text())
    for part in parts:
        if part.exists():
            merge(results, json.loads(part.read_text()))
    if summary:
        results["summary"] = summarize(conf["methods"], {r["key"]: r for r in results["runs"]},
                                       results["settings"]["seeds"], REFERENCE)
    save(results, out)
    return results


_WORKER = {}


def _start_worker(quick: bool, out: Path) -> None:
    """A --workers process: the data and the encoder, loaded once; the thread count `out` records (a note about the
    CPU runs: keep it)."""
    torch.set_num_threads(threads())
    _WORKER.update(conf=configuration(quick), model=load_encoder(), out=out,
                   threads=json.loads(out.read_text())["settings"]["threads"])


def _worker_job(job) -> tuple:
    """One (label, seed) final run into a part file of its own, the search runs copied from `out`: (part, seconds,
    error). An error is reported, not raised, so that the other jobs go on."""
    (label, seed), conf, tick = job, _WORKER["conf"], time.perf_counter()
    part = Path(tempfile.mkdtemp()) / "part.json"
    try:
        run_compare(conf, [m for m in conf["methods"] if m["label"] == label], *_WORKER["model"], part,
                    _WORKER["threads"], reuse=_WORKER["out"], train_seeds=[seed], progress=False)
        return part, time.perf_counter() - tick, None
    except Exception as error:  # report it and go on with the next job
        return part, time.perf_counter() - tick, repr(error)


def parallel_finals(conf, labels, seeds, workers: int, out: Path, quick: bool) -> dict:
    """Train the final runs of `labels` × `seeds` (seed by seed) in `workers` processes on this machine's device
    (one GPU holds many small runs at once); merge each into `out` as it ends, so a stopped job loses only the runs
    in flight (its summary is then stale: run --summarize). The search runs must be in `out` already."""
    todo, start = [(label, seed) for seed in seeds for label in labels], time.perf_counter()
    finished = []

    def done(job, future):
        part, seconds, error = future.result()
        finished.append(job)
        results = merge_parts(conf, out, [part], summary=False)
        shutil.rmtree(part.parent, ignore_errors=True)  # every run of it is in `out` now
        label, seed = job
        test = next((r.get("test") for r in results["runs"] if r["label"] == label and r["seed"] == seed
                     and r["phase"] == "final"), None)
        print(f"[{len(finished)}/{len(todo)}, {time.perf_counter() - start:.0f} s] {label}, seed {seed}: "
              + (f"FAILED {error}" if error else f"test {100 * test:.1f} ({seconds:.0f} s)"), flush=True)

    in_workers(todo, workers, _start_worker, (quick, out), _worker_job, done)
    return merge_parts(conf, out, [])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 methods, a few steps on a few rows (a smoke test)")
    parser.add_argument("--out", type=Path, help="JSON file (default: data/results/compare_methods.json)")
    parser.add_argument("--no-costs", action="store_true", help="skip the side-by-side cost measurement")
    parser.add_argument("--costs", action="store_true", help="measure the costs again even if the file has them "
                        "(on a quiet machine: nothing else running)")
    parser.add_argument("--first", nargs="+", metavar="LABEL", default=[],
                        help="run these methods' search and every seed before the others (the headline pairs)")
    parser.add_argument("--only", nargs="+", metavar="LABEL", help="train only these methods")
    parser.add_argument("--seeds", nargs="+", type=int, metavar="SEED",
                        help="train only these seeds' final runs, in this order (default: all)")
    parser.add_argument("--workers", type=int, default=0,
                        help="train the final runs in this many processes at once (on a GPU; the search runs "
                             "first, in this process)")
    parser.add_argument("--summarize", action="store_true",
                        help="train nothing: summarize the runs the file holds (an interrupted comparison, marked "
                             "partial), measure the costs if missing, plot")
    args = parser.parse_args(argv)
    conf = configuration(args.quick)
    by_label = {m["label"]: m for m in conf["methods"]}
    unknown = [label for label in args.first + (args.only or []) if label not in by_label]
    if unknown:
        raise SystemExit(f"no method labelled {unknown}; the labels are {list(by_label)}")
    torch.set_num_threads(threads())
    methods = [by_label[label] for label in args.only] if args.only else conf["methods"]
    out = args.out or (Path(tempfile.mkdtemp()) / "compare_methods.json" if args.quick
                       else ROOT / "data" / "results" / "compare_methods.json")
    backbone, tokenizer = load_encoder()
    recorded = json.loads(out.read_text())["settings"].get("threads") if out.exists() else None
    cpu_threads = recorded if args.workers and recorded else torch.get_num_threads()
    if args.summarize:
        results = merge_parts(conf, out, [])
    elif args.workers:
        print(f"{len(methods)} methods, {args.workers} workers; writing {out}", flush=True)
        run_compare(conf, methods, backbone, tokenizer, out, cpu_threads, train_seeds=[])  # the searches first
        seeds = args.seeds if args.seeds is not None else range(conf["settings"]["seeds"])
        results = parallel_finals(conf, [m["label"] for m in methods], seeds, args.workers, out, args.quick)
    else:
        print(f"{len(methods)} methods; writing {out}", flush=True)
        if args.first:  # REFERENCE too: the paired differences need it
            wanted = {REFERENCE, *args.first}
            run_compare(conf, [m for m in methods if m["label"] in wanted], backbone, tokenizer, out, cpu_threads)
        results = run_compare(conf, methods, backbone, tokenizer, out, cpu_threads, train_seeds=args.seeds)
        if args.only:
            results = merge_parts(conf, out, [])  # the summary of every method, not only these
    if args.costs or (not args.no_costs and "costs" not in results):
        results["costs"] = measure_costs(conf["methods"], conf["data"], copy.deepcopy(backbone), tokenizer,
                                         conf["settings"])
        save(results, out)
    plot_comparison(results, out.with_suffix(".png"))
    for row in results["summary"]:
        if not row["seeds"]:
            print(f"{row['label']:<30} not trained yet")
            continue
        gap = row.get("vs_reference")
        print(f"{row['label']:<30} {row['trainable_params']:>11,} params  lr {row['lr']:<8g} test "
              f"{100 * row['test_mean']:.1f} ± {100 * row['test_std']:.1f}" +
              (f"  vs {REFERENCE} {100 * gap['difference']:+.1f} [{100 * gap['low']:+.1f}, {100 * gap['high']:+.1f}]"
               if gap else ""))
    print(f"wrote {out} and {out.with_suffix('.png')}")
    return out


if __name__ == "__main__":
    main()
