"""Checks for 03_fine_tuning."""
import random

from minipeft.lab.course import ExerciseCheck
from minipeft.lab.models import load_encoder, tiny_bert
from minipeft.methods.finetune import apply_finetune
from minipeft.methods.probing import Classifier
from minipeft.params import count_parameters


def _top3_params():
    model = apply_finetune(Classifier(load_encoder()[0], num_labels=2), top_k=3)
    return count_parameters(model)["trainable"]


def _reference_early_stop(metrics, patience):
    """What train() does: a strictly better metric resets the count; stop after `patience` evaluations without."""
    best, since_best = 0, 0
    for i, metric in enumerate(metrics):
        since_best += 1
        if i == 0 or metric > metrics[best]:
            best, since_best = i, 0
        if patience is not None and since_best >= patience:
            return i + 1, best
    return len(metrics), best


def _early_stop_ok(answer):
    cases = [([0.5, 0.6, 0.6, 0.55, 0.58, 0.7], 2), ([0.7, 0.6, 0.65, 0.8], 3), ([0.5, 0.6, 0.7], 1),
             ([0.6, 0.6, 0.6, 0.6], 2), ([0.5, 0.55, 0.52, 0.51, 0.6], None)]
    rng = random.Random(0)
    cases += [([rng.choice([0.5, 0.6, 0.7, 0.8]) for _ in range(rng.randint(1, 9))], rng.choice([1, 2, 3, None]))
              for _ in range(200)]
    return all(tuple(answer(list(m), p)) == _reference_early_stop(m, p) for m, p in cases)


def _trainable_flags(model):
    return {name: p.requires_grad for name, p in model.named_parameters()}


def _freeze_embeddings_ok(answer):
    mine = Classifier(tiny_bert(), num_labels=2)
    answer(mine)
    reference = apply_finetune(Classifier(tiny_bert(), num_labels=2), freeze_embeddings=True)
    return _trainable_flags(mine) == _trainable_flags(reference)


def _wrong_early_stop(metrics, patience):  # keeps the LAST of equal metrics (>=), not the first
    best, since_best = 0, 0
    for i, metric in enumerate(metrics):
        since_best += 1
        if metric >= metrics[best]:
            best, since_best = i, 0
        if patience is not None and since_best >= patience:
            return i + 1, best
    return len(metrics), best


def _wrong_freeze(model):  # freezes the word embeddings only: positions, token types and the LayerNorm still train
    for p in model.parameters():
        p.requires_grad_(True)
    model.backbone.embeddings.word_embeddings.weight.requires_grad_(False)


CHECKS = {
    "top3_params": ExerciseCheck(
        lambda a: int(a) == _top3_params(),
        "start from everything the classifier has, and take away what stays frozen: the embeddings and the layers "
        "below the top 3",
        "the head and the pooler count as trained (they sit above the layers); with the notebook's P, P_emb, "
        "P_layer and L, the frozen part is the embeddings plus all but 3 of the L layers"),
    "early_stop": ExerciseCheck(
        _early_stop_ok,
        "follow the loop of train in minipeft/train.py evaluation by evaluation: which one counts as a new best "
        "when two metrics are equal, and when does the count of evaluations without improvement restart?",
        "a tie is no improvement, so the first of equal metrics stays the best; the count restarts at 0 on a new "
        "best, and training stops as soon as the count reaches patience (None: never)"),
    "freeze_embeddings": ExerciseCheck(
        _freeze_embeddings_ok,
        "set both directions: everything outside the embeddings trains, everything inside them does not",
        "the embedding block is more than the word table: the position and token-type tables and its LayerNorm "
        "belong to it too, and all of them sit in the backbone's embeddings module"),
}
WRONG = {"top3_params": 3 * 1_774_464, "early_stop": _wrong_early_stop, "freeze_embeddings": _wrong_freeze}
