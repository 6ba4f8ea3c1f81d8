"""The Transformer LM built from its parts (layers.py), assembled in transformer.py, described by
ModelConfig (config.py) and costed by accounting.py. Imports neither tokenizer nor training."""

from tinylm.model.config import ModelConfig
from tinylm.model.kv_cache import KVCache
from tinylm.model.transformer import Block, TransformerLM

__all__ = ["ModelConfig", "TransformerLM", "Block", "KVCache"]
