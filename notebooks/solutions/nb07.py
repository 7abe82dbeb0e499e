"""Solutions for 07_lora_bitfit_ia3's exercises."""
L_LM, D_LM, D_KV_LM, D_FF_LM = 30, 576, 3 * 64, 1536  # SmolLM2: 3 key/value heads of 64 dimensions
L_ENC, D_ENC = 6, 384  # MiniLM
MINILM_PARAMS = 22_713_216


def merge(W, A, B, alpha, r):
    """The merged weight W + (α / r) · B A: one matrix, so inference costs what the base model costs."""
    return W + (alpha / r) * (B @ A)


ANSWERS = {
    # q_proj, o_proj: 576 → 576; k_proj, v_proj: 576 → 192
    "lora_all_attention_smollm2": L_LM * 16 * (2 * (D_LM + D_LM) + 2 * (D_LM + D_KV_LM)),
    # 9,216 per unit of rank: r = 2 gives 18,432 < 22,713; r = 3 gives 27,648
    "rank_below_0_1_percent": max(r for r in range(1, 100) if r * L_ENC * 2 * 2 * D_ENC < 0.001 * MINILM_PARAMS),
    "ia3_smollm2": L_LM * (2 * D_KV_LM + D_FF_LM),
    "merge": merge,
}
