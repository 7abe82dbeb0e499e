"""Shared fixtures. Real models are loaded once per session and handed out as fresh deep copies, because
every method mutates the model it is applied to."""
import copy
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads: idle threads sleep (lab/kernel.py)

import pytest
import torch

from minipeft.lab import course, models

torch.set_num_threads(course.threads())


@pytest.fixture(scope="session")
def _encoder():
    return models.load_encoder()


@pytest.fixture(scope="session")
def _causal_lm():
    return models.load_causal_lm()


@pytest.fixture
def encoder(_encoder):
    """(fresh copy of real MiniLM BertModel, tokenizer)."""
    model, tokenizer = _encoder
    return copy.deepcopy(model), tokenizer


@pytest.fixture
def causal_lm(_causal_lm):
    """(fresh copy of real SmolLM2 LlamaForCausalLM, tokenizer)."""
    model, tokenizer = _causal_lm
    return copy.deepcopy(model), tokenizer


@pytest.fixture(scope="session")
def bert_tokenizer():
    return models.encoder_tokenizer()


@pytest.fixture(scope="session")
def llama_tokenizer():
    return models.causal_lm_tokenizer()


@pytest.fixture
def tiny_bert():
    return models.tiny_bert()


@pytest.fixture
def tiny_llama():
    return models.tiny_llama()


@pytest.fixture(params=["bert", "llama"])
def tiny_model(request):
    """Both tiny families, for tests that must hold on each: (model, family name)."""
    return (models.tiny_bert() if request.param == "bert" else models.tiny_llama()), request.param
