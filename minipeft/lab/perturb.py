"""Small, label-preserving changes to a text: a robustness suite (TextAttack-style perturbations, written here) and
simple augmentations for small training sets. Every function is deterministic for a given `seed` and text.

    perturbations (for testing)       typos(text, rate)            letters swapped, dropped, doubled or replaced
                                      lowercase(text)              what a careless writer types
                                      append_neutral(text)         one sentence that says nothing about the film
                                      synonym(text)                one word swapped for a synonym from SYNONYMS
    augmentations (for training)      word_dropout(text, p)        each word dropped with probability p
                                      swap_neighbours(text, n)     n random pairs of neighbouring words swapped
                                      synonym(text, every=True)    every word with a synonym swapped

    perturbed_tests(dataset)          {"typos": ..., "lowercase": ..., "neutral sentence": ..., "synonym": ...}
"""
import random
import re

from datasets import Dataset

SYNONYMS = {  # the table is ours: movie words and plain adjectives whose swap keeps a review's verdict
    "film": "movie", "movie": "film", "films": "movies", "movies": "films", "story": "tale", "plot": "storyline",
    "actor": "performer", "actors": "performers", "actress": "performer", "director": "filmmaker",
    "script": "screenplay", "scene": "sequence", "scenes": "sequences", "characters": "figures",
    "character": "figure", "audience": "viewers", "picture": "feature", "cast": "ensemble", "ending": "finale",
    "funny": "amusing", "boring": "dull", "dull": "tedious", "great": "excellent", "good": "fine", "bad": "poor",
    "beautiful": "lovely", "smart": "clever", "stupid": "dumb", "best": "finest", "worst": "poorest",
    "big": "large", "small": "little", "little": "small", "often": "frequently", "very": "really",
    "really": "truly", "quite": "rather", "almost": "nearly", "enough": "sufficiently", "seems": "appears",
    "makes": "renders", "gets": "becomes", "tries": "attempts", "hard": "difficult", "strange": "odd",
    "simple": "plain", "entire": "whole", "whole": "entire", "moments": "instants", "feel": "sense",
}
NEUTRAL = ["The film is in colour.", "It was released in cinemas.", "The credits name the cast and crew.",
           "It is a feature-length film."]  # facts with no verdict (a first list had "started ten minutes late")
WORD = re.compile(r"[A-Za-z]+")
KEYS = "qwertyuiopasdfghjklzxcvbnm"


def _rng(text: str, seed: int) -> random.Random:
    return random.Random(f"{seed}:{text}")  # the same text and seed always get the same change


def typos(text: str, rate: float = 0.05, seed: int = 0) -> str:
    """Each letter, with probability `rate`, swapped with the next one, dropped, doubled or replaced by a letter."""
    rng, out, i = _rng(text, seed), [], 0
    while i < len(text):
        ch = text[i]
        if not ch.isalpha() or rng.random() >= rate:
            out.append(ch)
        else:
            kind = rng.randrange(4)
            if kind == 0 and i + 1 < len(text) and text[i + 1].isalpha():
                out += [text[i + 1], ch]
                i += 1
            elif kind == 1:
                pass  # dropped
            elif kind == 2:
                out += [ch, ch]
            else:
                out.append(rng.choice(KEYS))
        i += 1
    return "".join(out)


def lowercase(text: str, seed: int = 0) -> str:
    """The text in lower case (MiniLM's tokenizer lower-cases anyway: a check that this changes nothing)."""
    return text.lower()


def append_neutral(text: str, seed: int = 0) -> str:
    """The text and one neutral sentence from NEUTRAL."""
    return f"{text} {_rng(text, seed).choice(NEUTRAL)}"


def synonym(text: str, seed: int = 0, every: bool = False) -> str:
    """One word (or, every=True, every word) that has an entry in SYNONYMS replaced by it, keeping its case."""
    spots = [m for m in WORD.finditer(text) if m.group().lower() in SYNONYMS]
    if not spots:
        return text
    chosen = spots if every else [_rng(text, seed).choice(spots)]
    for m in reversed(chosen):
        word, new = m.group(), SYNONYMS[m.group().lower()]
        new = new.capitalize() if word[0].isupper() else new
        text = text[:m.start()] + new + text[m.end():]
    return text


def word_dropout(text: str, p: float = 0.1, seed: int = 0) -> str:
    """Each word dropped with probability p (at least one word kept)."""
    rng, words = _rng(text, seed), text.split()
    kept = [w for w in words if rng.random() >= p]
    return " ".join(kept or words[:1])


def swap_neighbours(text: str, n: int = 1, seed: int = 0) -> str:
    """n times, two neighbouring words trade places."""
    rng, words = _rng(text, seed), text.split()
    for _ in range(n if len(words) > 1 else 0):
        i = rng.randrange(len(words) - 1)
        words[i], words[i + 1] = words[i + 1], words[i]
    return " ".join(words)


PERTURBATIONS = {"typos": typos, "lowercase": lowercase, "neutral sentence": append_neutral, "synonym": synonym}


def perturbed(dataset: Dataset, change, field: str = "text", seed: int = 0, **options) -> Dataset:
    """`dataset` with `change(text, seed=seed, **options)` applied to column `field`; labels and order unchanged."""
    if field not in dataset.column_names:
        raise ValueError(f"no column {field!r} to perturb; the columns are {dataset.column_names}")
    return dataset.map(lambda row: {field: change(row[field], seed=seed, **options)})


def perturbed_tests(dataset: Dataset, field: str = "text", seed: int = 0) -> dict[str, Dataset]:
    """The robustness suite: one perturbed copy of `dataset` per entry of PERTURBATIONS (typos at 5 % of letters)."""
    return {name: perturbed(dataset, change, field, seed) for name, change in PERTURBATIONS.items()}
