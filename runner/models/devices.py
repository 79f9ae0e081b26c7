"""Which torch device a task uses, and its name for provenance."""
from __future__ import annotations


def pick_device(gpus: float) -> str:
    """cuda when the task holds a GPU share and torch sees one, else cpu."""
    import torch

    return "cuda" if gpus > 0 and torch.cuda.is_available() else "cpu"


def device_name(device: str) -> str:
    """``cpu``, or the CUDA card's name (``NVIDIA H200``)."""
    if device == "cpu":
        return device
    import torch

    return torch.cuda.get_device_name()
