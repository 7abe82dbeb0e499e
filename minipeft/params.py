"""Parameter reports: how many parameters a method trains, in total and module by module.

`count_parameters` is the number every plot and table uses; `parameter_report` breaks it down by module type,
with layer numbers folded (`encoder.layer.*.attention.self.query.adapters.default.A`), so a learner sees at a
glance *where* a method trains. Every method file has a closed-form count that the tests compare with this.
"""
import re
from collections import OrderedDict

from torch import nn


def count_parameters(model: nn.Module) -> dict:
    """{'trainable', 'total', 'percent'}: shared parameters (tied embeddings) are counted once."""
    seen, trainable, total = set(), 0, 0
    for p in model.parameters():  # .parameters() already skips tied duplicates
        if id(p) in seen:
            continue
        seen.add(id(p))
        total += p.numel()
        trainable += p.numel() if p.requires_grad else 0
    return {"trainable": trainable, "total": total, "percent": 100.0 * trainable / max(total, 1)}


def parameter_report(model: nn.Module) -> list:
    """Rows {'module', 'trainable', 'total'} with layer indices folded into '*', in model order."""
    rows = OrderedDict()
    for name, p in model.named_parameters():
        key = re.sub(r"\.\d+\.", ".*.", name)
        row = rows.setdefault(key, {"module": key, "trainable": 0, "total": 0})
        row["total"] += p.numel()
        row["trainable"] += p.numel() if p.requires_grad else 0
    return list(rows.values())


def print_parameter_report(model: nn.Module, only_trainable: bool = True) -> None:
    """Print parameter_report as a table (only the modules that train, by default) and the totals."""
    rows = [r for r in parameter_report(model) if r["trainable"] or not only_trainable]
    width = max([len(r["module"]) for r in rows] + [20])
    print(f"{'module':<{width}} {'trainable':>12} {'total':>12}")
    for r in rows:
        print(f"{r['module']:<{width}} {r['trainable']:>12,} {r['total']:>12,}")
    c = count_parameters(model)
    print(f"trainable params: {c['trainable']:,} || all params: {c['total']:,} || trainable%: {c['percent']:.4f}")
