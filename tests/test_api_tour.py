"""The API tour in minipeft/__init__.py's docstring runs as written and does what its comments say."""
import re

import torch

import minipeft


def test_api_tour_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    tour = minipeft.__doc__.split("API tour")[1].splitlines()[2:]
    block = tour[:next(i for i, line in enumerate(tour) if line and not line.startswith("    "))]  # the indented part
    code = "\n".join(line[4:] for line in block)
    scope = {}
    exec(compile(code, "api_tour", "exec"), scope)
    model = scope["model"]
    assert minipeft.adapter_names(model) == ["nli", "sentiment"]
    assert (tmp_path / "runs" / "sentiment" / "adapter.safetensors").exists()
    printed = capsys.readouterr().out
    # 2 layers x 2 targets x r(32 + 32) with r = 8, plus the 32 x 2 + 2 head: what the comment promises
    assert re.search(r"'trainable': 2114", printed)
    ids = torch.randint(1000, 2000, (2, 7))
    with torch.no_grad():
        torch.testing.assert_close(scope["fresh"](ids)["logits"], scope["model"](ids)["logits"], rtol=0, atol=1e-6)
