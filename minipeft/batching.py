"""Batches: dynamic padding, batches of similar lengths, causal-LM targets, and which rows a batch holds.

    training     make_loader(dataset, tokenizer, "text", shuffle=True)     a new order every epoch (from the seed);
                 with group_by_length (the default) the rows of a batch have similar lengths, so little of a
                 step is spent on padding: Rotten Tomatoes' snippets average 27 tokens, but a random batch of
                 32 is padded to its longest row, about 47
    evaluation   make_loader(dataset, tokenizer, "text")                    longest rows first; the order does
                 not matter, predictions() puts each guess back on its row (batches_with_rows)

Three kinds of task: "classification" (one or two text columns and an int "label"), "causal_lm" (a prompt column
and a target column; only the target's tokens are learned, see lm_batch) and "tokens" (a column of words and a
column of one int tag per word; the tag sits on the first sub-token of its word, -100 elsewhere, see tag_batch):

    words     Reuters    shares    rose                    word_ids()   None  0    0     1     2    None
    tokens    [CLS]  re  ##uters  shares  rose  [SEP]      labels       -100  ORG  -100  O     O    -100
"""
import math

import torch
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import DataLoader

LOSS_KINDS = ("classification", "causal_lm", "tokens")


def length_grouped_batches(lengths: list[int], batch_size: int, generator: torch.Generator,
                           mega_batches: int = 50) -> list[list[int]]:
    """One epoch of training batches of similar lengths (the scheme of transformers' group_by_length): shuffle
    the rows, cut them into mega-batches of `mega_batches` × batch_size rows, sort each by length (longest
    first), cut it into batches, and shuffle the order of the batches. Every row is in exactly one batch; the
    same generator state gives the same batches."""
    order = torch.randperm(len(lengths), generator=generator).tolist()
    size = mega_batches * batch_size
    batches = []
    for start in range(0, len(order), size):
        group = sorted(order[start:start + size], key=lambda i: -lengths[i])
        batches += [group[i:i + batch_size] for i in range(0, len(group), batch_size)]
    return [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]


class LengthGroupedSampler:
    """A batch sampler that draws a new `length_grouped_batches` epoch each time it is iterated."""

    def __init__(self, lengths: list[int], batch_size: int, generator: torch.Generator):
        self.lengths, self.batch_size, self.generator = lengths, batch_size, generator

    def __iter__(self):
        return iter(length_grouped_batches(self.lengths, self.batch_size, self.generator))

    def __len__(self) -> int:
        return math.ceil(len(self.lengths) / self.batch_size)


def make_loader(dataset, tokenizer, fields, batch_size=32, max_length=128, shuffle=False, seed=0,
                task="classification", group_by_length=True) -> DataLoader:
    """Batches padded to their own longest row, not to max_length (dynamic padding).

    classification: `fields` names one text column or a pair (encoded as tokenizer(first, second)), and the
    dataset has an int "label" column. causal_lm: `fields` = (prompt column, target column), see lm_batch.
    tokens: `fields` = (words column, tags column), see tag_batch.
    shuffle=True (training): a new order each epoch, from `seed`; with group_by_length the batches hold rows
    of similar length (length_grouped_batches), which saves the compute spent on padding. shuffle=False
    (evaluation): with group_by_length the rows go in order of length, else in dataset order."""
    fields = [fields] if isinstance(fields, str) else list(fields)
    if task not in LOSS_KINDS:
        raise ValueError(f"task must be one of {LOSS_KINDS}, not {task!r}")

    def collate(rows):
        columns = [[row[f] for row in rows] for f in fields]
        if task == "causal_lm":
            return lm_batch(tokenizer, *columns, max_length=max_length)
        if task == "tokens":
            return tag_batch(tokenizer, *columns, max_length=max_length)
        batch = dict(tokenizer(*columns, truncation=True, max_length=max_length, padding=True, return_tensors="pt"))
        if len(fields) == 1:
            batch.pop("token_type_ids", None)  # all zeros for a single text: the model's default anyway
        return {**batch, "labels": torch.tensor([row["label"] for row in rows])}

    generator = torch.Generator().manual_seed(seed)
    if not group_by_length:
        return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, collate_fn=collate, generator=generator)
    lengths = token_lengths(dataset, tokenizer, fields, max_length, task)
    if shuffle:
        sampler = LengthGroupedSampler(lengths, batch_size, generator)
    else:
        by_length = sorted(range(len(lengths)), key=lambda i: -lengths[i])
        sampler = [by_length[i:i + batch_size] for i in range(0, len(by_length), batch_size)]
    return DataLoader(dataset, batch_sampler=sampler, collate_fn=collate, generator=generator)


def token_lengths(dataset, tokenizer, fields: list[str], max_length: int, task="classification") -> list[int]:
    """The number of tokens each row becomes (prompt + target + EOS for a causal LM), at most max_length."""
    columns = [list(dataset[f]) for f in fields]
    if task == "causal_lm":
        return [min(len(a) + len(b) + 1, max_length) for a, b in zip(
            tokenizer(columns[0])["input_ids"], tokenizer(columns[1], add_special_tokens=False)["input_ids"])]
    if task == "tokens":
        columns = [[list(words) for words in columns[0]]]
    return [len(ids) for ids in tokenizer(*columns, truncation=True, max_length=max_length,
                                          is_split_into_words=task == "tokens")["input_ids"]]


def batches_with_rows(loader: DataLoader):
    """Yield (rows, batch): the dataset rows of each batch the loader makes, and the batch. A plain list of
    batches (no sampler to ask) yields (None, batch)."""
    if not isinstance(loader, DataLoader):
        yield from ((None, batch) for batch in loader)
        return
    fetch = getattr(loader.dataset, "__getitems__", None)
    for rows in loader.batch_sampler:
        yield rows, loader.collate_fn(fetch(rows) if fetch else [loader.dataset[i] for i in rows])


def lm_batch(tokenizer, prompts, targets, max_length=128) -> dict:
    """input_ids, attention_mask and labels to learn to continue each prompt with its target (+ EOS).
    labels are -100 on the prompt and the padding: only the target tokens are learned. A prompt too long is
    cut from the left, so the target always fits (its first max_length tokens)."""
    ids, labels = [], []
    for prompt, target in zip(prompts, targets):
        answer = (tokenizer(target, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id])[:max_length]
        question = tokenizer(prompt)["input_ids"]
        question = question[max(0, len(question) + len(answer) - max_length):]
        ids.append(torch.tensor(question + answer))
        labels.append(torch.tensor([-100] * len(question) + answer))
    return {"input_ids": pad_sequence(ids, batch_first=True, padding_value=tokenizer.pad_token_id),
            "attention_mask": pad_sequence([torch.ones_like(i) for i in ids], batch_first=True),
            "labels": pad_sequence(labels, batch_first=True, padding_value=-100)}


def align_labels(word_ids: list, word_labels: list[int]) -> list[int]:
    """One label per sub-token from one label per word: the word's label on its first sub-token, -100 on its other
    sub-tokens and on special tokens (word id None). `word_ids` is a fast tokenizer's encoding.word_ids()."""
    labels, previous = [], None
    for word in word_ids:
        labels.append(-100 if word is None or word == previous else word_labels[word])
        previous = word
    return labels


def tag_batch(tokenizer, words: list[list[str]], tags: list[list[int]], max_length=128) -> dict:
    """input_ids, attention_mask and labels (align_labels) for sentences given as lists of words with one int tag
    per word. Needs a fast tokenizer (word_ids). Raises ValueError if a row's tags are not one int per word."""
    for row, (w, t) in enumerate(zip(words, tags)):
        if len(w) != len(t) or not all(isinstance(x, int) and not isinstance(x, bool) for x in t):
            raise ValueError(f"row {row}: the tag column must hold one int tag per word, got {len(w)} words and "
                             f"tags {list(t)[:8]!r}: pick the column of tag ids (e.g. ner_tags), not {type(t[0])}")
    batch = tokenizer([list(w) for w in words], is_split_into_words=True, truncation=True, max_length=max_length,
                      padding=True, return_tensors="pt")
    labels = [align_labels(batch.word_ids(i), t) for i, t in enumerate(tags)]
    batch = {k: v for k, v in batch.items() if k != "token_type_ids"}  # one text: all zeros, the default
    return {**batch, "labels": torch.tensor(labels)}
