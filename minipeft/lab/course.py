"""Small helpers the notebooks share: QUICK mode, committed results, and exercise checks.

QUICK mode (environment variable MINIPEFT_QUICK=1) shrinks data and training steps so that CI can execute
every notebook in a few minutes; the committed notebooks carry the outputs of a full run.

The committed results (data/results/) and the notebooks live in the repository, not in the installed package:
`ROOT` is the checkout this package sits in, or $MINIPEFT_ROOT, and `load_results` says what to do when it is
not there.
"""
import json
import os
from pathlib import Path

ROOT = Path(os.environ.get("MINIPEFT_ROOT") or Path(__file__).resolve().parents[2])
RESULTS = ROOT / "data" / "results"


def quick() -> bool:
    """Whether QUICK mode is on (MINIPEFT_QUICK set to anything but 0 / false)."""
    return os.environ.get("MINIPEFT_QUICK", "0") not in ("", "0", "false", "False")


def pick(full, quick_value):
    """`full` normally, `quick_value` in QUICK mode: e.g. steps = pick(300, 10)."""
    return quick_value if quick() else full


def load_results(name: str):
    """A committed benchmark result from data/results/ (the heavy sweeps the notebooks do not re-run)."""
    path = RESULTS / name
    if not RESULTS.is_dir():
        raise FileNotFoundError(f"{RESULTS} does not exist: the committed results live in the minipeft repository. "
                                f"Run from a clone of it, or set MINIPEFT_ROOT=/path/to/the/clone")
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run `make bench` (hours) or pull the committed results")
    return json.loads(path.read_text())


class ExerciseCheck:
    """An exercise's auto-check. `check(answer)` prints ✅, or ❌ with a hint, and returns None, so the notebook
    shows the message and no `Out[n]: False` under it. The first wrong try shows `hint` (the idea to use); from the
    second wrong try on, `more` too (a fuller hint). Neither gives the answer away (tests/test_exercises.py checks).
    `check.passes(answer)` is the True/False without printing: what the tests call with the solution and with a
    wrong answer."""

    def __init__(self, test, hint: str, more: str | None = None):
        self.test, self.hint, self.more = test, hint, more
        self.wrong_tries = 0

    def judge(self, answer) -> tuple[bool, str]:
        """(right?, why not): a wrong shape or type is a wrong answer, not a crash; its error is the reason."""
        try:
            return bool(self.test(answer)), ""
        except Exception as error:
            return False, f"{type(error).__name__}: {error}"

    def passes(self, answer) -> bool:
        """Whether `answer` is right, silently."""
        return self.judge(answer)[0]

    def __call__(self, answer) -> None:
        if answer is None:
            print("✍️  Replace None with your answer, then run this cell again.")
            return
        ok, error = self.judge(answer)
        if ok:
            print("✅ Correct!")
            return
        self.wrong_tries += 1
        lines = [f"❌ Not yet. Hint: {self.hint}"]
        if self.more and self.wrong_tries >= 2:
            lines.append(f"   More: {self.more}")
        elif self.more:
            lines.append("   (a fuller hint comes with your next try)")
        if error:
            lines.append(f"   Your answer raised {error}")
        print("\n".join(lines))


def threads() -> int:
    """How many threads torch should use: $MINIPEFT_THREADS if set, else the physical cores this process may run
    on (more threads than cores only fight each other for them). The one place the course decides it; the notebooks
    call torch.set_num_threads(course.threads()). Idle threads should sleep, not spin, when other programs share
    the cores: the course's kernel sets OMP_WAIT_POLICY=PASSIVE before torch loads (minipeft/lab/kernel.py)."""
    wanted = os.environ.get("MINIPEFT_THREADS", "").strip()
    if wanted:
        if not wanted.isdigit() or int(wanted) < 1:
            raise ValueError(f"MINIPEFT_THREADS={wanted!r}: expected a whole number of threads, 1 or more")
        return int(wanted)
    import psutil
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(psutil.cpu_count(logical=False) or usable or 1, usable or 1))
