"""Solutions for 00_setup's exercises."""
from minipeft.lab.data import load_task
from minipeft.lab.models import load_encoder

_config = load_encoder()[0].config
ANSWERS = {
    # word, position and token-type embeddings, then one LayerNorm (weight and bias)
    "embedding_params": (_config.vocab_size + _config.max_position_embeddings + _config.type_vocab_size)
    * _config.hidden_size + 2 * _config.hidden_size,
    "fresh_share": sum(load_task("rotten_tomatoes")["train"]["label"]) / len(load_task("rotten_tomatoes")["train"]),
}
