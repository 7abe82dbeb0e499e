"""Checks for 00_setup."""
from minipeft.lab.course import ExerciseCheck
from minipeft.lab.data import load_task
from minipeft.lab.models import load_encoder


def _embedding_params():
    c = load_encoder()[0].config
    return (c.vocab_size + c.max_position_embeddings + c.type_vocab_size) * c.hidden_size + 2 * c.hidden_size


def _fresh_share():
    labels = load_task("rotten_tomatoes")["train"]["label"]
    return sum(labels) / len(labels)


CHECKS = {
    "embedding_params": ExerciseCheck(lambda a: int(a) == _embedding_params(),
                                      "(vocab + positions + token types) × d, plus the LayerNorm's weight and bias"),
    "fresh_share": ExerciseCheck(lambda a: abs(float(a) - _fresh_share()) < 1e-3,
                                 "mean of the 0/1 labels of the training split"),
}
WRONG = {"embedding_params": 30522 * 384, "fresh_share": 0.5}
