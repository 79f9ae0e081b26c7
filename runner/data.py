"""Data sources -> model inputs (token id tensors)."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from runner.spec.models import TokensData


def make_tokens(data: Any, d_vocab: int, default_seed: int, device: str = "cpu") -> torch.Tensor:
    """Token ids [batch, length] for a tokens or random_tokens source (numpy-seeded, so portable)."""
    if isinstance(data, TokensData):
        array = np.asarray(data.tokens, dtype=np.int64)
    else:
        opts = data.random_tokens
        rng = np.random.default_rng(default_seed if opts.seed is None else opts.seed)
        array = rng.integers(0, d_vocab, size=(opts.batch, opts.length), dtype=np.int64)
    return torch.from_numpy(array).to(device)
