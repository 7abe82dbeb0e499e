"""Small helpers the notebooks share: QUICK mode, committed results, and exercise checks.

QUICK mode (environment variable MINIPEFT_QUICK=1) shrinks data and training steps so that CI can execute
every notebook in a few minutes; the committed notebooks carry the outputs of a full run.
"""
import json
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "data" / "results"
SOLUTIONS = ROOT / "notebooks" / "solutions"


def quick() -> bool:
    return os.environ.get("MINIPEFT_QUICK", "0") not in ("", "0", "false", "False")


def pick(full, quick_value):
    """`full` normally, `quick_value` in QUICK mode: e.g. steps = pick(300, 10)."""
    return quick_value if quick() else full


def load_results(name: str):
    """A committed benchmark result from data/results/ (the heavy sweeps the notebooks do not re-run)."""
    path = RESULTS / name
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run `make bench` (hours) or pull the committed results")
    return json.loads(path.read_text())


class ExerciseCheck:
    """An exercise's auto-check: `check(answer)` prints ✅ or ❌ with a hint and returns True/False.
    The notebooks' tests call the same checks with the solution and with a wrong answer."""

    def __init__(self, test, hint: str):
        self.test, self.hint = test, hint

    def __call__(self, answer) -> bool:
        if answer is None:
            print("✍️  Replace None with your answer, then run this cell again.")
            return False
        hint = self.hint
        try:
            ok = bool(self.test(answer))
        except Exception as error:  # a wrong shape or type is a wrong answer, not a crash
            ok, hint = False, f"{hint} ({type(error).__name__}: {error})"
        print("✅ Correct!" if ok else f"❌ Not yet. Hint: {hint}")
        return ok
