"""Solutions for 05_prefix_tuning's exercises."""


def expand_kv(x, groups):
    """(batch, KV heads, n, d_h) -> (batch, KV heads · groups, n, d_h): KV head j serves query heads
    j·groups … j·groups + groups − 1, so each head is repeated `groups` times in a row."""
    return x.repeat_interleave(groups, dim=1)


L, D, D_KV = 30, 576, 3 * 64  # SmolLM2: 30 layers, d = 576, 3 KV heads of 64 dimensions
K, H = 16, 256
ANSWERS = {
    "expand_kv": expand_kv,
    # E (k × d), W1 and b1 (d → h), W2 and b2 (h → 2·L·d_kv); after folding only the table 2·L·k·d_kv is left
    "fold_counts": (K * D + (D * H + H) + (H + 1) * 2 * L * D_KV, 2 * L * K * D_KV),
    # 1000 users × 2·L·k·d_kv float32 numbers
    "server_mib": 1000 * 2 * L * 10 * D_KV * 4 / 2 ** 20,
}
