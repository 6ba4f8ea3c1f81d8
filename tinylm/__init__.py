"""tinylm: byte-level BPE, a Transformer LM built from its parts, and its trainer.

Public names: train_bpe and BpeTrainer (BPE training: the course's function and the settings object),
Tokenizer, TransformerLM, ModelConfig. All are imported on first use (PEP 562), so `import tinylm`
costs nothing, tokenizer-only work (and its worker processes) never imports torch, and the
`tinylm` program imports only what its command needs.
"""

from importlib import import_module

__all__ = ["train_bpe", "BpeTrainer", "Tokenizer", "TransformerLM", "ModelConfig"]
__version__ = "0.1.0"

_HOMES = {
    "Tokenizer": "tinylm.tokenizer.bpe",
    "BpeTrainer": "tinylm.tokenizer.train",
    "train_bpe": "tinylm.tokenizer.train",
    "TransformerLM": "tinylm.model.transformer",
    "ModelConfig": "tinylm.model.config",
}


def __getattr__(name):
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'tinylm' has no attribute {name!r}")
    value = getattr(import_module(home), name)
    globals()[name] = value  # later lookups are plain attribute reads
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
