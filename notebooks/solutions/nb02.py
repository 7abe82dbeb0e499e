"""Solutions for 02_probing's exercises."""


def mean_pool(hidden, mask):
    mask = mask.unsqueeze(-1).to(hidden.dtype)            # (batch, length, 1): 1 on real tokens
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)


ANSWERS = {
    "mean_pool": mean_pool,
    # W1: 576 × 576 + 576 bias, W2: 576 × 3 + 3 bias
    "mlp_probe_smollm2": 576 * 576 + 576 + 576 * 3 + 3,
    # 7 layers × 384 features in, 2 classes out, plus 2 biases
    "all_layers_probe_params": 7 * 384 * 2 + 2,
}
