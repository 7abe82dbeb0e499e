"""Every exercise's auto-check accepts the solution in notebooks/solutions/ and rejects a wrong answer."""
import importlib
import pkgutil
import sys
from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
sys.path.insert(0, str(NOTEBOOKS))
MODULES = sorted(m.name for m in pkgutil.iter_modules([str(NOTEBOOKS / "exercises")]))
CASES = [(m, name) for m in MODULES for name in importlib.import_module(f"exercises.{m}").CHECKS]


def test_every_exercise_module_has_solutions():
    assert MODULES, "no exercise modules found"
    for m in MODULES:
        checks = importlib.import_module(f"exercises.{m}")
        answers = importlib.import_module(f"solutions.{m}").ANSWERS
        assert set(checks.CHECKS) == set(answers) == set(checks.WRONG), m


@pytest.mark.slow
@pytest.mark.parametrize("module,name", CASES, ids=[f"{m}.{n}" for m, n in CASES])
def test_check_accepts_solution_and_rejects_wrong_answer(module, name):
    checks = importlib.import_module(f"exercises.{module}")
    answer = importlib.import_module(f"solutions.{module}").ANSWERS[name]
    assert checks.CHECKS[name](answer) is True
    assert checks.CHECKS[name](checks.WRONG[name]) is False
