"""Key/value cache for incremental decoding: each position's keys and values are computed once.

Without a cache, producing token t+1 runs the model over all t tokens again (O(t²) attention and
O(t) projections per new token). With one, the prompt is processed once (the "prefill") and every
new token is a forward pass over one position that attends to the cached keys and values of all
earlier ones (as in nanoGPT's and nanochat's samplers, and Hugging Face's `past_key_values`).

The cache holds at most `capacity` positions (the model's context_length, the longest stretch
its position table covers); `tinylm.generate` re-fills it from the last window when it is full.
"""

from __future__ import annotations

import torch

from tinylm.errors import ConfigError


class LayerKVCache:
    """One attention layer's keys and values, (B, H, capacity, head_dim) each, filled up to `length`.

    The buffers are allocated on the first `append`, with the batch size, device and dtype of the
    keys given (bf16 under autocast, float32 otherwise), so the caller never has to guess them.
    """

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.length = 0
        self.keys: torch.Tensor | None = None
        self.values: torch.Tensor | None = None

    def append(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store the new positions' k, v (B, H, T, head_dim); return all cached ones (B, H, length, head_dim).

        Raises ConfigError when the new positions do not fit in the capacity or their batch size,
        heads, head size, device or dtype differ from what is cached.
        """
        T = k.shape[-2]
        if self.length + T > self.capacity:
            raise ConfigError(
                f"the KV cache holds {self.capacity} positions (the context length); "
                f"{self.length} are used and {T} more do not fit"
            )
        if self.keys is None:
            shape = (*k.shape[:-2], self.capacity, k.shape[-1])
            self.keys = k.new_empty(shape)
            self.values = v.new_empty(shape)
        elif k.shape[:-2] != self.keys.shape[:-2] or k.dtype != self.keys.dtype or k.device != self.keys.device:
            raise ConfigError(
                f"keys of shape {tuple(k.shape)} ({k.dtype}, {k.device}) do not match the cache's "
                f"{tuple(self.keys.shape)} ({self.keys.dtype}, {self.keys.device})"
            )
        end = self.length + T
        self.keys[..., self.length:end, :] = k
        self.values[..., self.length:end, :] = v
        self.length = end
        return self.keys[..., :end, :], self.values[..., :end, :]


class KVCache:
    """The caches of all layers of one model, for one batch of sequences decoded together.

    `length` is the number of positions processed so far (the next position's index). Pass the
    cache to `TransformerLM.forward(ids, kv_cache=cache)` with only the positions not yet seen.
    """

    def __init__(self, num_layers: int, capacity: int):
        if capacity < 1:
            raise ConfigError(f"a KV cache needs a capacity of at least 1 position, got {capacity}")
        self.capacity = capacity
        self.layers = [LayerKVCache(capacity) for _ in range(num_layers)]

    @classmethod
    def for_model(cls, config) -> KVCache:
        """An empty cache for a model with this ModelConfig (capacity: its context_length)."""
        return cls(config.num_layers, config.context_length)

    @property
    def length(self) -> int:
        return self.layers[0].length if self.layers else 0

    def reset(self) -> None:
        """Forget every position (the buffers are kept and reused)."""
        for layer in self.layers:
            layer.length = 0
