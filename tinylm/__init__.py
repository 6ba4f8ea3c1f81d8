"""tinylm: byte-level BPE, a Transformer LM built from its parts, and its trainer.

Public names: train_bpe and BpeTrainer (BPE training: the course's function and the settings object),
Tokenizer, TransformerLM, ModelConfig. The model names are imported
lazily so that tokenizer-only work (and its worker processes) never pays for importing torch.
"""

from tinylm.tokenizer.bpe import Tokenizer
from tinylm.tokenizer.train import BpeTrainer, train_bpe

__all__ = ["train_bpe", "BpeTrainer", "Tokenizer", "TransformerLM", "ModelConfig"]
__version__ = "0.1.0"


def __getattr__(name):
    if name == "TransformerLM":
        from tinylm.model.transformer import TransformerLM

        return TransformerLM
    if name == "ModelConfig":
        from tinylm.model.config import ModelConfig

        return ModelConfig
    raise AttributeError(f"module 'tinylm' has no attribute {name!r}")
