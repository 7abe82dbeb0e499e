"""Token classification (methods/tagging.py, batching.tag_batch), entity-level F1, the CoNLL-2003 sample and the
control task of Hewitt & Liang (lab/probes.py). Each test names the bug it catches."""
from collections import Counter

import pytest
import torch
from transformers import AutoTokenizer

import minipeft as mp
from minipeft.batching import align_labels, make_loader, tag_batch
from minipeft.lab import data, models, probes
from minipeft.methods.probing import probe_parameter_count
from minipeft.methods.tagging import entity_spans
from minipeft.train import evaluate, train


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(models.encoder_path())


# ---------------------------------------------------------------- labels on the first sub-token
def test_each_word_label_sits_on_its_first_sub_token_and_minus_100_elsewhere(tokenizer):
    """Bug: labelling every sub-token of a word, or shifting labels by the [CLS] token."""
    words, tags = ["Reuters", "unbelievably", "rose", "in", "Kuala", "Lumpur"], [3, 0, 0, 0, 5, 6]
    pieces = [tokenizer.tokenize(w) for w in words]
    assert max(map(len, pieces)) > 1, "the test needs a word that splits into several sub-tokens"
    expected = [-100]  # [CLS]
    for piece, tag in zip(pieces, tags):
        expected += [tag] + [-100] * (len(piece) - 1)
    expected += [-100]  # [SEP]
    batch = tag_batch(tokenizer, [words, words[:2]], [tags, tags[:2]])
    assert batch["labels"][0].tolist() == expected
    head = 1 + len(pieces[0]) + len(pieces[1])  # [CLS] and the first two words
    short = expected[:head] + [-100] * (len(expected) - head)  # [SEP] and the padding: -100
    assert batch["labels"][1].tolist() == short
    assert batch["input_ids"].shape == batch["labels"].shape


def test_align_labels_by_hand():
    """Bug: a repeated word id (a word's second sub-token) not recognised as the same word."""
    assert align_labels([None, 0, 0, 1, 2, 2, 2, None], [7, 8, 9]) == [-100, 7, -100, 8, 9, -100, -100, -100]


@pytest.mark.parametrize("tags", [[["O", "B-PER"]], [[1]], [[1, 2, 3]]], ids=["strings", "too_few", "too_many"])
def test_a_bad_tag_column_raises_a_clear_error(tokenizer, tags):
    """Bug: tag names (not ids) or a tag list of the wrong length silently misaligned."""
    with pytest.raises(ValueError, match="one int tag per word"):
        tag_batch(tokenizer, [["Japan", "won"]], tags)


# ---------------------------------------------------------------- entity-level F1
def test_entity_spans_read_iob_like_conlleval():
    """Bug: an I- tag after O (no B-) dropped, or two adjacent B- entities merged."""
    assert entity_spans(["O", "I-PER", "I-PER", "O"]) == {("PER", 1, 3)}  # I- without B- starts an entity
    assert entity_spans(["B-LOC", "B-LOC"]) == {("LOC", 0, 1), ("LOC", 1, 2)}
    assert entity_spans(["B-ORG", "I-LOC", "I-LOC"]) == {("ORG", 0, 1), ("LOC", 1, 3)}  # a type change starts one
    assert entity_spans(["B-MISC", "I-MISC"]) == {("MISC", 0, 2)}  # ends at the sentence's end
    assert entity_spans(["O", "O"]) == set()


def test_entity_f1_counts_only_exact_spans_of_the_right_type():
    """Bug: partial overlaps or a wrong type credited; the word-level score taken for the entity-level one."""
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O"], ["O", "O"]]
    pred = [["B-PER", "O", "O", "B-LOC"],     # PER cut short: wrong; LOC right
            ["B-LOC", "O"],                   # right span, wrong type: wrong
            ["O", "I-MISC"]]                  # an entity that is not there
    f = mp.entity_f1(gold, pred)
    assert (f["gold"], f["predicted"], f["correct"]) == (3, 4, 1)
    assert f["precision"] == pytest.approx(1 / 4) and f["recall"] == pytest.approx(1 / 3)
    assert f["f1"] == pytest.approx(2 / 7)
    assert mp.entity_f1(gold, gold)["f1"] == 1.0
    assert mp.entity_f1([["O"]], [["O"]])["f1"] == 0.0  # nothing to find: 0, not NaN
    with pytest.raises(ValueError):
        mp.entity_f1(gold, pred[:2])


# ---------------------------------------------------------------- the head
@pytest.mark.parametrize("head", ["linear", "mlp"])
def test_token_head_parameter_count_closed_form_equals_measured(head):
    """Bug: a head sized by the wrong width or number of labels."""
    model = mp.TokenClassifier(models.tiny_bert(), num_labels=9, head=head)
    measured = sum(p.numel() for n, p in model.named_parameters() if n.startswith("head."))
    assert measured == probe_parameter_count(model.config.hidden_size, 9, head)


def test_token_logits_are_the_head_at_every_position_and_the_loss_skips_minus_100():
    """Bug: pooling instead of one prediction per position; -100 positions counted in the loss."""
    model = mp.TokenClassifier(models.tiny_bert(), num_labels=4, layer=1).eval()
    ids = torch.randint(1000, 2000, (2, 6))
    labels = torch.tensor([[-100, 1, 2, -100, 3, -100], [-100, 0, -100, -100, -100, -100]])
    out = model(input_ids=ids, labels=labels)
    hidden = model.backbone(input_ids=ids, output_hidden_states=True).hidden_states[1]
    torch.testing.assert_close(out["logits"], model.head(hidden))
    keep = labels != -100
    torch.testing.assert_close(out["loss"], torch.nn.functional.cross_entropy(out["logits"][keep], labels[keep]))


def test_lora_on_the_token_classifier_is_the_identity_at_init(encoder):
    """Bug: LoRA's B not zero at initialisation (the adapted tagger would not start from the probe's outputs)."""
    backbone, tok = encoder
    model = mp.TokenClassifier(backbone, num_labels=9).eval()
    batch = tag_batch(tok, [["EU", "rejects", "German", "call"], ["Peter", "Blackburn"]], [[3, 0, 7, 0], [1, 2]])
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    with torch.no_grad():
        before = model(**inputs)["logits"]
        mp.apply_lora(model, targets=["query", "value"], r=8, alpha=16)
        after = model(**inputs)["logits"]
    assert torch.equal(before, after)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert {"head.weight", "head.bias"} <= trainable and all("adapters" in n or "head" in n for n in trainable)


def test_train_with_task_tokens_learns_and_scores_only_first_sub_tokens(tokenizer):
    """Bug: train / evaluate not lining up per-position logits with per-position labels."""
    rows = [{"tokens": ["Japan", "beat", "Syria"], "tags": [1, 0, 1]}, {"tokens": ["Nadim", "Ladki"], "tags": [2, 2]},
            {"tokens": ["the", "defence", "of", "Asia"], "tags": [0, 0, 0, 1]}] * 4
    from datasets import Dataset
    ds = Dataset.from_list(rows)
    model = mp.apply_finetune(mp.TokenClassifier(models.tiny_bert(), num_labels=3))
    loader = make_loader(ds, tokenizer, ("tokens", "tags"), batch_size=4, shuffle=True, task="tokens")
    history, _ = train(model, loader, loader, lr=3e-3, steps=40, task="tokens", progress=False, precision="fp32")
    assert history[-1]["loss"] < history[0]["loss"]
    assert evaluate(model, loader, "tokens") == 1.0
    guesses = mp.predict_tags(model, make_loader(ds, tokenizer, ("tokens", "tags"), task="tokens"))
    assert guesses == [r["tags"] for r in rows]  # one guess per word, rows back in dataset order


# ---------------------------------------------------------------- the data and the control task
def test_conll_sample_counts_and_split_by_document():
    """Bug: sentences of one document in two splits, or sentences lost or merged when reading the file."""
    dsd = data.load_conll()
    rows = data.conll_summary(dsd)
    assert sum(r["sentences"] for r in rows) == 226 and sum(r["words"] for r in rows) == 3140
    assert sum(r["documents"] for r in rows) == 15
    docs = {split: set(ds["document"]) for split, ds in dsd.items()}
    assert not (docs["train"] & docs["test"]) and not (docs["train"] & docs["validation"])
    row = dsd["train"][0]
    assert len(row["tokens"]) == len(row["pos_tags"]) == len(row["chunk_tags"]) == len(row["ner_tags"])
    assert set(docs["test"]) != set(data.load_conll(seed=1)["test"]["document"])


def test_control_tags_are_a_function_of_the_word_type_and_follow_the_real_distribution():
    """Bug: a tag drawn per occurrence (not per type), or drawn uniformly instead of from the real tags' shares."""
    sentences = [[f"w{i}" for i in range(j, j + 10)] for j in range(0, 6000, 3)]  # overlapping: types repeat
    real = [[0 if int(w[1:]) % 10 < 7 else (1 if int(w[1:]) % 10 < 9 else 2) for w in s] for s in sentences]
    control = probes.control_tags(sentences, real, seed=0)
    table = {}
    for words, tags in zip(sentences, control):
        for w, t in zip(words, tags):
            assert table.setdefault(w, t) == t, f"{w} got two control tags"
    real_counts = Counter(t for row in real for t in row)
    real_share = {t: c / sum(real_counts.values()) for t, c in real_counts.items()}
    drawn = Counter(table.values())
    for t, share in real_share.items():
        assert drawn[t] / len(table) == pytest.approx(share, abs=0.03)
    assert control == probes.control_tags(sentences, real, seed=0)
    assert control != probes.control_tags(sentences, real, seed=1)


def test_a_token_tagger_adapter_saves_loads_and_refuses_a_sentence_head(tmp_path):
    """Bug: a tagger's adapter loaded into a sentence Classifier (same head shape, another task) without a word."""
    torch.manual_seed(0)
    model = mp.apply_lora(mp.TokenClassifier(models.tiny_bert(), num_labels=5), r=2)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.1 * torch.randn_like(p))  # as if trained: B ≠ 0, the head moved
    path = mp.save_adapter(model, tmp_path / "tagger")
    fresh = mp.load_adapter(mp.TokenClassifier(models.tiny_bert(), num_labels=5), path)
    ids = torch.randint(1000, 2000, (2, 7))
    with torch.no_grad():
        assert torch.equal(fresh.eval()(input_ids=ids)["logits"], model.eval()(input_ids=ids)["logits"])
    with pytest.raises(ValueError, match="task head"):
        mp.load_adapter(mp.Classifier(models.tiny_bert(), num_labels=5, pooling="cls"), path)
