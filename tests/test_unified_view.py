"""He et al. 2022 ("Towards a Unified View of Parameter-Efficient Transfer Learning", arXiv:2110.04366), their
equation for prefix tuning, checked on a real MiniLM layer: attention over [P_k; K], [P_v; V] is a gated sum

    head(q) = (1 − λ(q)) · Attn(q, K, V) + λ(q) · Attn(q, P_k, P_v)
    λ(q)    = Σ_i exp(q·P_k,i / √d) / (Σ_i exp(q·P_k,i / √d) + Σ_j exp(q·K_j / √d))   (the softmax mass on the prefix)

and Attn(q, P_k, P_v) = softmax(x W_q P_kᵀ / √d) P_v is a parallel adapter f(x W₁) W₂ with W₁ = W_q P_kᵀ (d × k,
bias included), f = softmax, W₂ = P_v: prefix tuning adds Δh = λ · (adapter(x) − h) to the attention output."""
import pytest
import torch

import minipeft as mp

LAYER, K = 2, 5


def attention(q, k, v, mask):
    """softmax(q kᵀ / √d + mask) v, per head; mask: 0 where allowed, −inf where not (broadcast over queries)."""
    return torch.softmax(q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5 + mask, dim=-1) @ v


@pytest.mark.slow
def test_prefix_tuning_is_a_gated_parallel_adapter_on_a_real_minilm_layer(encoder):
    model, tokenizer = encoder
    torch.manual_seed(0)
    mp.apply_prefix_tuning(model, k=K)
    batch = tokenizer(["a gorgeous, witty, seductive movie.", "dull."], return_tensors="pt", padding=True)
    self_attention = model.encoder.layer[LAYER].attention.self
    seen = {}
    hook = self_attention.register_forward_hook(
        lambda module, args, kwargs, out: seen.update(h=kwargs.get("hidden_states", args[0] if args else None),
                                                      out=out[0]), with_kwargs=True)
    with torch.no_grad():
        model(**batch)
        hook.remove()
        h, heads, d = seen["h"], model.config.num_attention_heads, self_attention.attention_head_size

        def split(x):  # (batch, n, heads·d) → (batch, heads, n, d)
            return x.view(*x.shape[:2], heads, d).transpose(1, 2)

        q, keys, values = split(self_attention.query(h)), split(self_attention.key(h)), split(self_attention.value(h))
        prefix = model.prefixes.adapters["default"]()[:, LAYER]  # (2, heads, k, d): this layer's P_k, P_v
        p_k, p_v = prefix[0][None], prefix[1][None]
        pad = torch.zeros(batch["attention_mask"].shape).masked_fill(batch["attention_mask"] == 0, float("-inf"))
        pad = pad[:, None, None, :]
        assert (batch["attention_mask"] == 0).any()  # the mask matters: the second row is padded

        base = attention(q, keys, values, pad)  # the frozen layer's own attention
        adapter = attention(q, p_k, p_v, torch.zeros(1))  # attention over the prefix alone
        prefix_mass = torch.exp(q @ p_k.transpose(-1, -2) / d ** 0.5).sum(-1, keepdim=True)
        token_mass = (torch.exp(q @ keys.transpose(-1, -2) / d ** 0.5 + pad)).sum(-1, keepdim=True)
        lam = prefix_mass / (prefix_mass + token_mass)
        gated = (1 - lam) * base + lam * adapter
        merge = lambda x: x.transpose(1, 2).reshape(*x.shape[0:1], x.shape[2], heads * d)  # noqa: E731
        real = batch["attention_mask"].bool()
        torch.testing.assert_close(merge(gated)[real], seen["out"][real], rtol=1e-4, atol=1e-5)

        # the same adapter written as f(x W1) W2: W1 = W_q P_kᵀ per head (the query bias rides along), f = softmax
        w_q, b_q = self_attention.query.weight.view(heads, d, -1), self_attention.query.bias.view(heads, 1, d)
        w1 = w_q.transpose(1, 2) @ p_k[0].transpose(1, 2) / d ** 0.5  # (heads, d_model, k)
        b1 = b_q @ p_k[0].transpose(1, 2) / d ** 0.5  # (heads, 1, k)
        parallel = torch.softmax(h[:, None] @ w1 + b1, dim=-1) @ p_v
        torch.testing.assert_close(parallel, adapter, rtol=1e-4, atol=1e-5)
        assert 0.01 < lam[real[:, None, :, None].expand_as(lam)].mean() < 0.99  # both branches count here
