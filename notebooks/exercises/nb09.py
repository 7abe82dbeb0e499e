"""Checks for 09_token_tasks. Shapes come from the model's config file and the tag names from the data file: no
weights are loaded."""
import random

from transformers import AutoConfig

from minipeft.batching import align_labels
from minipeft.lab.course import ExerciseCheck
from minipeft.lab.data import conll_tag_names
from minipeft.lab.models import encoder_path
from minipeft.methods.tagging import entity_spans


def _random_word_ids(rng: random.Random) -> list:
    """A word_ids() list: None, words of 1 to 3 pieces in order, None, then padding (None)."""
    ids = [None]
    for word in range(rng.randint(1, 8)):
        ids += [word] * rng.randint(1, 3)
    return ids + [None] * rng.randint(1, 4)


def _first_piece_labels_is_right(first_piece_labels) -> bool:
    rng = random.Random(0)
    cases = [([None, 0, 0, 1, 2, 2, 2, None], [7, 8, 9]), ([None, 0, None, None], [4])]
    for _ in range(50):
        ids = _random_word_ids(rng)
        cases.append((ids, [rng.randint(0, 8) for _ in range(max(i for i in ids if i is not None) + 1)]))
    return all(list(first_piece_labels(list(ids), list(labels))) == align_labels(ids, labels) for ids, labels in cases)


def _spans_is_right(spans) -> bool:
    rng = random.Random(0)
    tags = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    cases = [["O", "I-PER", "I-PER"], ["B-LOC", "B-LOC"], ["B-ORG", "I-LOC"], ["B-MISC", "I-MISC"], ["O"]]
    cases += [[rng.choice(tags) for _ in range(rng.randint(1, 10))] for _ in range(200)]
    return all(set(spans(list(c))) == entity_spans(c) for c in cases)


def _mlp_probe_pos() -> int:
    d, c, h = AutoConfig.from_pretrained(encoder_path()).hidden_size, len(conll_tag_names("pos_tags")), 64
    return d * h + h + h * c + c


CHECKS = {
    "first_piece_labels": ExerciseCheck(
        _first_piece_labels_is_right,
        "walk along the pieces and remember the word id of the piece before: a piece gets its word's label only "
        "when it starts a new word",
        "special tokens and padding have no word id at all; every later piece of a word repeats the id of the piece "
        "before it, and both kinds get the ignored label"),
    "spans": ExerciseCheck(
        _spans_is_right,
        "keep the type and the start of the entity you are inside; close it whenever the next tag does not continue "
        "it, and do not forget the one still open at the end of the sentence",
        "an I tag of another type, a B tag, or O all close the open entity; an I tag with nothing open (or after "
        "another type) opens a new one, just like B"),
    "mlp_probe_pos": ExerciseCheck(
        lambda a: int(a) == _mlp_probe_pos(),
        "the MLP has two linear layers, each with a weight matrix and a bias; read the width of MiniLM and count the "
        "tags this sample uses",
        "the first layer maps the 384 features to the hidden units, the second maps the hidden units to one score per "
        "POS tag; there are 38 tags in this sample, and each layer has one bias per output"),
}
WRONG = {
    "first_piece_labels": lambda ids, labels: [-100 if w is None else labels[w] for w in ids],  # every piece labelled
    "spans": lambda tags: {s for s in entity_spans(tags) if tags[s[1]].startswith("B-")},  # I- without B- dropped
    "mlp_probe_pos": 384 * 64 + 64 * 38,  # forgot the biases
}
