"""QLoRA: LoRA trained on top of a base model kept 4-bit quantized (Dettmers et al. 2023, "QLoRA: Efficient
Finetuning of Quantized LLMs", arXiv:2305.14314), here on the Q4_1 blocks SmolLM2 actually ships in (its GGUF file).

    Q4_1 block (ggml): 32 weights in 20 bytes = fp16 scale d | fp16 minimum m | 16 bytes of 4-bit codes q
        w_j = d · q_j + m          q_j = low nibble of byte j (j < 16), high nibble of byte j − 16 (j ≥ 16)
    h = dequant(blocks) x + s · B A x      blocks: uint8 buffers, frozen; A, B: LoRA's pair (lora.py), trained

            x ──────────────────────┐
    ┌───────▼─────────┐         ┌───▼───┐
    │  uint8 blocks   │         │ s·B A │   LoRA (lora.py): the only trained tensors
    │  → W = d·q + m  │         └───┬───┘
    │  fp32, one layer│             │
    │  at a time      │             │
    └───────┬─────────┘             │
            └─────────── + ◀────────┘
                         h

Where: every nn.Linear the GGUF file stores as Q4_1 (SmolLM2: q/k/v/o_proj, gate/up/down_proj of 30 layers; the
Q8_0 embedding, tied to the LM head, stays as transformers loaded it). `quantize_from_gguf` swaps them for a
QuantizedLinear holding the raw bytes of the file (0.625 bytes per weight instead of 4), then `apply_lora` works
unchanged on top (`apply_qlora` does both). The dequantized weight exists only inside one layer's forward or
backward: the backward dequantizes again instead of saving it (as bitsandbytes' 4-bit matmul does). llama.cpp
interleaves the rows of q/k per head (rotary halves) when converting; the rows are put back here as transformers
does, so the dequantized weights equal transformers' (bit for bit: the same fp32 operations). Merging is refused:
W + s·BA would have to be quantized again. As the base is frozen, the backward needs no gradient for W, so the
layer's input x is not saved either (autograd's fp32 matmul keeps it).

Trainable parameters: LoRA's, r · (d_in + d_out) per target. The paper's QLoRA differs in its format: NF4 (16
levels at normal quantiles, one absmax per block of 64), its block constants quantized again to 8 bits ("double
quantization", 4.127 bits per weight), bf16 compute and paged optimizers. Here the format is the one that shipped
(Q4_1: 5 bits per weight with its two fp16 constants), compute is fp32; NF4 is built by hand in `nf4_levels` /
`nf4_roundtrip` to compare the two formats' errors (benchmarks/qlora.py).
"""
import torch
from torch import nn
from torch.nn import functional as F

from ..core import body
from .lora import apply_lora

GGUF_TO_HF = {"attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
              "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
              "ffn_down": "mlp.down_proj"}


def dequantize_q4_1(blocks: torch.Tensor) -> torch.Tensor:
    """(out, n_blocks, 20) uint8 Q4_1 blocks → (out, 32·n_blocks) fp32 weights, w = d·q + m."""
    d, m = blocks[..., 0:2].view(torch.float16).float(), blocks[..., 2:4].view(torch.float16).float()
    codes = blocks[..., 4:]
    q = torch.cat([codes & 0x0F, codes >> 4], dim=-1).float()  # element j: low nibbles, then high nibbles
    return (d * q + m).reshape(blocks.shape[0], -1)


class _PackedLinear(torch.autograd.Function):
    """y = x Wᵀ with W = dequant(blocks); saves only the uint8 blocks, dequantizes again for the backward."""

    @staticmethod
    def forward(ctx, x, blocks):
        """y = x Wᵀ; keeps the blocks (a reference to the buffer), not W."""
        ctx.save_for_backward(blocks)
        return F.linear(x, dequantize_q4_1(blocks).to(x.dtype))

    @staticmethod
    def backward(ctx, grad):
        """∂L/∂x = ∂L/∂y · W, W dequantized again from the saved blocks."""
        blocks, = ctx.saved_tensors
        return grad @ dequantize_q4_1(blocks).to(grad.dtype), None  # the base is frozen: no gradient for W


class QuantizedLinear(nn.Linear):
    """An nn.Linear (so LoRA's targeting finds it) whose weight lives as Q4_1 bytes in the buffer `blocks`.
    `.weight` dequantizes on demand (a new fp32 tensor, never stored); it cannot be assigned to."""
    mergeable = False

    def __init__(self, blocks: torch.Tensor):
        nn.Module.__init__(self)  # not nn.Linear's: it would allocate an fp32 weight
        self.out_features, self.in_features = blocks.shape[0], blocks.shape[1] * 32
        self.register_buffer("blocks", blocks)
        self.register_parameter("bias", None)

    @property
    def weight(self) -> torch.Tensor:
        """The dequantized weight, (out_features, in_features) fp32, made anew at every access."""
        return dequantize_q4_1(self.blocks)

    @weight.setter
    def weight(self, value):
        """Refused: the weight is packed."""
        raise TypeError("a QuantizedLinear's weight is packed Q4_1: it cannot be assigned to or merged into")

    def forward(self, x):
        """x Wᵀ, W dequantized inside this call only."""
        return _PackedLinear.apply(x, self.blocks)


def read_q4_1(gguf_path, num_heads: int, num_kv_heads: int) -> dict[str, torch.Tensor]:
    """{module name under the transformer body ("layers.0.self_attn.q_proj"): (out, n_blocks, 20) uint8} for every
    Q4_1 tensor of a llama GGUF file, q/k rows put back in transformers' order."""
    from gguf import GGMLQuantizationType, GGUFReader
    found = {}
    for tensor in GGUFReader(gguf_path).tensors:
        block, layer, kind, _ = (tensor.name.split(".") + ["", "", ""])[:4]
        if tensor.tensor_type != GGMLQuantizationType.Q4_1 or block != "blk" or kind not in GGUF_TO_HF:
            continue
        blocks = torch.from_numpy(tensor.data.copy()).view(tensor.data.shape[0], -1, 20)
        if kind in ("attn_q", "attn_k"):  # llama.cpp stores row (head, j, half) for transformers' (head, half, j)
            heads = num_heads if kind == "attn_q" else num_kv_heads
            rows = torch.arange(blocks.shape[0]).view(heads, -1, 2).transpose(1, 2).reshape(-1)
            blocks = blocks[rows]
        found[f"layers.{layer}.{GGUF_TO_HF[kind]}"] = blocks.contiguous()
    return found


def quantize_from_gguf(model, gguf_path) -> list[str]:
    """Replace every plain nn.Linear of `model` that `gguf_path` stores as Q4_1 by a QuantizedLinear holding the
    file's bytes; returns the names replaced. Call it before applying adapters. Raises ValueError when the file's
    shapes do not fit the model or the file holds no Q4_1 tensor."""
    llama = body(model)
    found = read_q4_1(gguf_path, llama.config.num_attention_heads, llama.config.num_key_value_heads)
    if not found:
        raise ValueError(f"{gguf_path} holds no Q4_1 tensor of a llama model")
    for name, blocks in found.items():
        linear = llama.get_submodule(name)
        if type(linear) is not nn.Linear or linear.weight.shape != (blocks.shape[0], blocks.shape[1] * 32):
            raise ValueError(f"{name}: {type(linear).__name__} does not fit Q4_1 blocks {tuple(blocks.shape)}")
        parent, _, child = name.rpartition(".")
        setattr(llama.get_submodule(parent), child, QuantizedLinear(blocks.to(linear.weight.device)))
    return sorted(found)


def apply_qlora(model, gguf_path, targets=("q_proj", "v_proj"), r: int = 8, alpha: float = 16,
                dropout: float = 0.0, rslora: bool = False, name: str = "default"):
    """QLoRA in two steps: quantize_from_gguf (unless already done), then apply_lora with the same arguments. The
    adapter is a plain LoRA adapter (saved, loaded, exported as one) on a base whose fingerprint is the packed one."""
    if not any(isinstance(m, QuantizedLinear) for m in model.modules()):
        quantize_from_gguf(model, gguf_path)
    return apply_lora(model, targets, r=r, alpha=alpha, dropout=dropout, rslora=rslora, name=name)


def nf4_levels() -> torch.Tensor:
    """QLoRA's NF4: 8 positive and 7 negative quantiles of N(0, 1) and an exact 0, scaled into [−1, 1]. The end
    probabilities are the midpoint of 1 − 1/(2·15) and 1 − 1/(2·16), so that ±1 are reached."""
    offset = (1 - 1 / 30 + 1 - 1 / 32) / 2
    positive = torch.special.ndtri(torch.linspace(offset, 0.5, 9, dtype=torch.float64)[:-1])
    negative = -torch.special.ndtri(torch.linspace(offset, 0.5, 8, dtype=torch.float64)[:-1])
    levels = torch.cat([positive, torch.zeros(1, dtype=torch.float64), negative]).sort().values
    return (levels / levels.abs().max()).float()


def nf4_roundtrip(w: torch.Tensor, block: int = 64) -> torch.Tensor:
    """w quantized to NF4 in blocks of `block` (absmax scale per block, kept in fp32) and dequantized again."""
    x = w.reshape(-1, block)
    scale = x.abs().amax(dim=1, keepdim=True).clamp_min(1e-12)
    levels = nf4_levels().to(w.device)
    codes = torch.bucketize(x / scale, (levels[1:] + levels[:-1]) / 2)  # the nearest level
    return (levels[codes] * scale).reshape(w.shape)


def q4_1_roundtrip(w: torch.Tensor, block: int = 32) -> torch.Tensor:
    """w quantized Q4_1-style in blocks of `block` (16 uniform levels from the block's min to its max, scale and
    minimum kept in fp32) and dequantized again."""
    x = w.reshape(-1, block)
    low, high = x.amin(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)
    d = ((high - low) / 15).clamp_min(1e-12)
    return (((x - low) / d).round().clamp(0, 15) * d + low).reshape(w.shape)
