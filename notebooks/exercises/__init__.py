"""Auto-checks for the notebooks' exercises: one module per notebook, each with CHECKS and WRONG.

CHECKS maps an exercise name to an ExerciseCheck; WRONG maps it to a plausible wrong answer. The notebooks call
CHECKS[name](answer); tests/test_exercises.py checks that every check accepts the answer in
notebooks/solutions/<module>.py (ANSWERS) and rejects WRONG.
"""
