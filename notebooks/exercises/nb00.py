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
    "embedding_params": ExerciseCheck(
        lambda a: int(a) == _embedding_params(),
        "an embedding table holds one vector of d numbers per entry it can look up; MiniLM's embedding block has "
        "three such tables, and a LayerNorm after them",
        "read vocab_size, max_position_embeddings, type_vocab_size and hidden_size from the config: add up the "
        "three tables, then the LayerNorm's two vectors (a scale and a shift) of size d"),
    "fresh_share": ExerciseCheck(
        lambda a: abs(float(a) - _fresh_share()) < 1e-3,
        "the labels are 0 (rotten) and 1 (fresh): which fraction of the training labels is 1?",
        "average the label column of the training split, loaded as in the cells above; the answer is a share "
        "between 0 and 1, and the split is not exactly balanced"),
}
WRONG = {"embedding_params": 30522 * 384, "fresh_share": 0.5}
