"""Solutions for 06_adapter_tuning's exercises."""
import torch


def bottleneck(h, W_down, b_down, W_up, b_up):
    """h + W_up relu(W_down h + b_down) + b_up, for h with the features in its last dimension (rows)."""
    return h + torch.relu(h @ W_down.T + b_down) @ W_up.T + b_up


L_SMOLLM, D_SMOLLM, R = 30, 576, 16
ANSWERS = {
    "bottleneck": bottleneck,
    # Houlsby: 2 modules per layer; each 2dr + d + r, plus the gate's scalar
    "smollm_houlsby_gate": 2 * L_SMOLLM * (2 * D_SMOLLM * R + D_SMOLLM + R + 1),
    # 6 · (769 r + 384) ≤ 73,728  ⇔  r ≤ (12,288 − 384) / 769 = 15.48…
    "pfeiffer_r_like_lora": (6 * 2 * 8 * (384 + 384) // 6 - 384) // (2 * 384 + 1),
}
