"""The robustness suite and the augmentations: deterministic, label-preserving, doing what their names say."""
import datasets
import pytest

from minipeft.lab import perturb

TEXT = "A Funny film, but the script is boring and the actors seem tired."


def test_every_change_is_deterministic_for_a_seed_and_varies_with_it():
    changes = [perturb.typos, perturb.append_neutral, perturb.synonym, perturb.word_dropout, perturb.swap_neighbours]
    for change in changes:
        assert change(TEXT, seed=0) == change(TEXT, seed=0), change.__name__
    assert len({perturb.typos(TEXT, rate=0.2, seed=s) for s in range(5)}) > 1


def test_typos_touch_about_the_rate_of_letters_and_nothing_else():
    text = " ".join(["sentence"] * 400)
    changed = perturb.typos(text, rate=0.05, seed=1)
    assert changed != text and perturb.typos(text, rate=0.0) == text
    assert abs(len(changed.split()) - 400) == 0  # spaces are never touched
    differing = sum(a != b for a, b in zip(changed.split(), text.split()))
    assert 0.15 < differing / 400 < 0.50  # 8 letters a word at 5 %: 1 - 0.95^8 ≈ 34 % of words touched


def test_synonym_swaps_one_word_from_the_table_keeping_its_case():
    one = perturb.synonym(TEXT, seed=0)
    diff = [(a, b) for a, b in zip(TEXT.split(), one.split()) if a != b]
    assert len(diff) == 1
    old, new = (w.strip(",.") for w in diff[0])
    assert perturb.SYNONYMS[old.lower()].lower() == new.lower() and old[0].isupper() == new[0].isupper()
    every = perturb.synonym(TEXT, every=True)
    assert "Amusing movie" in every and "screenplay" in every and "dull" in every and "performers" in every
    assert perturb.synonym("nothing here to swap", seed=3) == "nothing here to swap"


def test_append_neutral_adds_one_sentence_from_the_list():
    out = perturb.append_neutral(TEXT, seed=2)
    assert out.startswith(TEXT + " ") and out[len(TEXT) + 1:] in perturb.NEUTRAL


def test_augmentations_keep_words_and_their_count_as_promised():
    words = TEXT.split()
    dropped = perturb.word_dropout(TEXT, p=0.5, seed=0).split()
    assert 0 < len(dropped) < len(words) and all(w in words for w in dropped)
    assert perturb.word_dropout("one", p=1.0) == "one"  # never empty
    swapped = perturb.swap_neighbours(TEXT, n=3, seed=0).split()
    assert sorted(swapped) == sorted(words) and swapped != words


def test_lowercase_changes_nothing_for_an_uncased_tokenizer(bert_tokenizer):
    assert bert_tokenizer(TEXT)["input_ids"] == bert_tokenizer(perturb.lowercase(TEXT))["input_ids"]


def test_perturbed_tests_keep_labels_and_order_and_refuse_a_missing_column():
    ds = datasets.Dataset.from_dict({"text": [TEXT, "a dull film", "great acting"], "label": [0, 0, 1]})
    suite = perturb.perturbed_tests(ds)
    assert list(suite) == ["typos", "lowercase", "neutral sentence", "synonym"]
    for name, changed in suite.items():
        assert changed["label"] == ds["label"] and len(changed) == len(ds), name
    assert suite["synonym"]["text"][1] == "a tedious film"
    with pytest.raises(ValueError, match="no column 'sentence'"):
        perturb.perturbed(ds, perturb.typos, field="sentence")
