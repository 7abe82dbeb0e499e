"""Every exercise's auto-check accepts the solution in notebooks/solutions/ and rejects a wrong answer; a check prints
its verdict and returns nothing (so the notebook shows no `Out[n]: False` under it); its hints point to the idea,
a second wrong try adds a fuller hint, and no hint gives the answer away."""
import ast
import importlib
import io
import pkgutil
import re
import sys
import tokenize
from pathlib import Path

import pytest

from minipeft.lab.course import ExerciseCheck

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
    assert checks.CHECKS[name].passes(answer) is True
    assert checks.CHECKS[name].passes(checks.WRONG[name]) is False


# ---------------------------------------------------------------- what a learner sees
def test_a_check_prints_its_verdict_and_returns_nothing(capsys):
    check = ExerciseCheck(lambda a: a == 42, "think of the question", "it is a number")
    assert check(42) is None  # nothing for IPython to echo as Out[n]
    assert capsys.readouterr().out == "✅ Correct!\n"
    assert check(None) is None
    assert "Replace None with your answer" in capsys.readouterr().out
    assert check.wrong_tries == 0  # an unanswered cell is not a wrong try
    assert check.passes(42) is True and check.passes(41) is False
    assert capsys.readouterr().out == ""  # passes() is silent


def test_the_fuller_hint_comes_with_the_second_wrong_try(capsys):
    check = ExerciseCheck(lambda a: a == 42, "think of the question", "it is a number")
    check(41)
    first = capsys.readouterr().out
    assert "❌ Not yet. Hint: think of the question" in first and "it is a number" not in first
    assert "a fuller hint comes with your next try" in first
    check(40)
    second = capsys.readouterr().out
    assert "Hint: think of the question" in second and "More: it is a number" in second


def test_an_answer_that_raises_is_a_wrong_answer_with_its_error(capsys):
    check = ExerciseCheck(lambda f: f(2) == 4, "square it")
    assert check.passes(lambda x: x.missing) is False
    check(lambda x: x.missing)
    out = capsys.readouterr().out
    assert "Hint: square it" in out and "AttributeError" in out and "fuller hint" not in out  # none to come


# ---------------------------------------------------------------- hints never give the answer
OPERAND = r"(?:\w+|\([^()]*\))"
OPERATOR = r"(?:\s*[×·*/+−^@]\s*|\s+-\s+)"
FORMULA = re.compile(rf"{OPERAND}(?:{OPERATOR}{OPERAND}){{2,}}")  # two operators or more: a formula
CODE = [re.compile(r"\w\("), re.compile(r"\w\["), re.compile(r"\b[A-Za-z_]\w+\.[A-Za-z_]\w*")]  # call, index, a.b
FILE_NAME = re.compile(r"\.(py|json|ipynb)$")


def normalized(text: str) -> str:
    """Spaces out, the notebooks' maths symbols as Python writes them."""
    return re.sub(r"\s+", "", text.translate(str.maketrans({"×": "*", "·": "*", "−": "-", "α": "alpha"})))


def solution_code_lines(module: str) -> list[str]:
    """The code lines of notebooks/solutions/<module>.py (comments and docstrings out), normalized."""
    source = (NOTEBOOKS / "solutions" / f"{module}.py").read_text()
    docstrings = {node.body[0].lineno for node in ast.walk(ast.parse(source))
                  if isinstance(node, (ast.Module, ast.FunctionDef)) and node.body
                  and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    comments = {tok.start[0]: tok.start[1] for tok in tokenize.generate_tokens(io.StringIO(source).readline)
                if tok.type == tokenize.COMMENT}
    lines = [line[:comments.get(number, len(line))] for number, line in enumerate(source.splitlines(), 1)
             if number not in docstrings]
    return [normalized(line) for line in lines if len(normalized(line)) >= 12]


def solution_calls(module: str) -> set[str]:
    """The snake_case functions and methods the solutions call (one_hot, repeat_interleave, ...)."""
    tree = ast.parse((NOTEBOOKS / "solutions" / f"{module}.py").read_text())
    names = {getattr(node.func, "attr", None) or getattr(node.func, "id", None) for node in ast.walk(tree)
             if isinstance(node, ast.Call)}
    return {n for n in names if n and "_" in n.strip("_")}


def numbers(answer) -> list:
    """The numbers an answer is made of (none for a function)."""
    if isinstance(answer, bool) or callable(answer):
        return []
    if isinstance(answer, (int, float)):
        return [answer]
    if isinstance(answer, (tuple, list)):
        return [x for item in answer for x in numbers(item)]
    return []


def leaks(hint: str, module: str, answer) -> list[str]:
    """Why `hint` gives the answer away: code, a formula, a function the solution calls, a line of the solution,
    the expected value. Empty when it only points to the idea."""
    found = [f"code {m.group()!r}" for pattern in CODE for m in pattern.finditer(hint)
             if not FILE_NAME.search(m.group())]
    found += [f"a formula {m.group()!r}" for m in FORMULA.finditer(hint)]
    found += [f"names {name!r}, which the solution calls" for name in solution_calls(module)
              if re.search(rf"\b{re.escape(name)}\b", hint)]
    found += [f"a line of the solution {line!r}" for line in solution_code_lines(module) if line in normalized(hint)]
    for value in numbers(answer):
        if isinstance(value, int) and abs(value) < 100:
            continue  # small whole numbers ("2 layers") are everywhere; the formula rule covers how to get them
        shown = {str(value), f"{value:,}"} if float(value).is_integer() else {f"{value:.2f}", f"{value:.3f}"}
        found += [f"the answer {s}" for s in shown if re.search(rf"(?<![\d.,]){re.escape(s)}(?![\d,])", hint)]
    return found


@pytest.mark.parametrize("module,name", CASES, ids=[f"{m}.{n}" for m, n in CASES])
def test_hints_point_to_the_idea_without_giving_the_answer(module, name):
    check = importlib.import_module(f"exercises.{module}").CHECKS[name]
    answer = importlib.import_module(f"solutions.{module}").ANSWERS[name]
    assert check.hint and check.more, "two hints: the idea first, a fuller one after a second wrong try"
    for hint in (check.hint, check.more):
        assert not leaks(hint, module, answer), f"{hint!r}: {leaks(hint, module, answer)}"


@pytest.mark.parametrize("module,name,old_hint", [
    ("nb06", "bottleneck", "h + (W_up @ relu(W_down @ h + b_down)) + b_up; with h as rows: "
                           "h + relu(h @ W_down.T + b_down) @ W_up.T + b_up"),
    ("nb06", "smollm_houlsby_gate", "2 adapters per layer × 30 layers × (2dr + d + r + 1 gate)"),
    ("nb05", "expand_kv", "query head q must read KV head q // groups: repeat each KV head `groups` times in a row "
                          "(repeat_interleave on dim 1)"),
    ("nb01", "best_margin", "with 2 classes q_y = 1 − ε/2 = 0.9 and p_y = sigmoid(m): solve sigmoid(m) = 0.9"),
    ("nb07", "merge", "W + (α / r) · B @ A: B is d_out × r, A is r × d_in"),
    ("nb03", "freeze_embeddings", "everything trainable first, then every parameter of model.backbone.embeddings "
                                  "(word, position, token-type, LayerNorm) frozen"),
    ("nb05", "server_mib", "1000 users × 2·L·k·d_kv numbers × 4 bytes, divided by 2**20; d_kv is 192, not 576"),
])
def test_the_leak_finder_catches_the_hints_that_gave_answers_away(module, name, old_hint):
    answer = importlib.import_module(f"solutions.{module}").ANSWERS[name]
    assert leaks(old_hint, module, answer)
