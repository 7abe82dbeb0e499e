"""Solutions for 03_fine_tuning's exercises."""
from minipeft.lab.models import load_encoder

_c = load_encoder()[0].config
_d, _f, _L = _c.hidden_size, _c.intermediate_size, _c.num_hidden_layers
_embeddings = (_c.vocab_size + _c.max_position_embeddings + _c.type_vocab_size) * _d + 2 * _d
_layer = 4 * (_d * _d + _d) + (_d * _f + _f) + (_f * _d + _d) + 2 * 2 * _d  # attention, FFN, two LayerNorms
_total = _embeddings + _L * _layer + (_d * _d + _d) + (_d * 2 + 2)       # + pooler + the Classifier's head


def early_stop(metrics, patience):
    """(evaluations run, index of the restored one), as train() does it."""
    best, since_best = 0, 0
    for i, metric in enumerate(metrics):
        since_best += 1
        if i == 0 or metric > metrics[best]:  # strictly better: the first of equal metrics is kept
            best, since_best = i, 0
        if patience is not None and since_best >= patience:
            return i + 1, best
    return len(metrics), best


def freeze_embeddings(model):
    for p in model.parameters():
        p.requires_grad_(True)
    for p in model.backbone.embeddings.parameters():
        p.requires_grad_(False)


ANSWERS = {
    "top3_params": _total - _embeddings - (_L - 3) * _layer,
    "early_stop": early_stop,
    "freeze_embeddings": freeze_embeddings,
}
