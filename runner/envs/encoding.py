"""MiniGrid observations as active indices for a sum-mode ``nn.EmbeddingBag``.

An observation is MiniGrid's symbolic 7x7x3 view (object, colour, state index
per cell; ``minigrid.core.constants``) plus the agent's facing direction
(0 right, 1 down, 2 left, 3 up). Its one-hot encoding has ``OBS_FEATURES``
entries of which exactly ``OBS_ACTIVE`` are 1:

    cell = 7 * i + j                     for image[i, j] (array order)
    index = cell * CELL_FEATURES + offset(channel) + value
    offsets: object 0, colour len(OBJECT_TO_IDX), state + len(COLOR_TO_IDX)
    direction index = N_CELLS * CELL_FEATURES + direction   (the last one)

MiniGrid stores the view as ``image[x, y]``: the first index runs left to
right across the agent's view, the second from the far edge (0) to the
agent's own row (6); the agent stands at ``image[3, 6]`` facing ``y = 0``.

>>> import numpy as np
>>> idx = observation_indices(np.zeros((2, 7, 7, 3), np.uint8), np.array([0, 3]))
>>> idx.shape, int(idx.max()) < OBS_FEATURES
((2, 148), True)
"""
from __future__ import annotations

import numpy as np
from minigrid.core.constants import COLOR_TO_IDX, OBJECT_TO_IDX, STATE_TO_IDX

VIEW = 7
N_CELLS = VIEW * VIEW
N_DIRECTIONS = 4
CHANNEL_SIZES = np.array([len(OBJECT_TO_IDX), len(COLOR_TO_IDX), len(STATE_TO_IDX)], dtype=np.int64)
CHANNEL_OFFSETS = np.concatenate([[0], np.cumsum(CHANNEL_SIZES)[:-1]]).astype(np.int64)
CHANNEL_NAMES = ("object", "colour", "state")
CELL_FEATURES = int(CHANNEL_SIZES.sum())                 # 11 + 6 + 3 = 20
DIRECTION_OFFSET = N_CELLS * CELL_FEATURES              # 980
OBS_FEATURES = DIRECTION_OFFSET + N_DIRECTIONS          # 984
OBS_ACTIVE = N_CELLS * 3 + 1                            # 148

# Index bases of the 147 cell-channel slots, in the order observation_indices emits them.
_BASES = (np.arange(N_CELLS, dtype=np.int64)[:, None] * CELL_FEATURES + CHANNEL_OFFSETS).reshape(-1)
_SIZES = np.tile(CHANNEL_SIZES, N_CELLS)


def _check_values(images: np.ndarray, directions: np.ndarray) -> None:
    """Raise ValueError naming the first image or direction value outside MiniGrid's ranges."""
    bad = images >= CHANNEL_SIZES
    if images.size and (bad.any() or images.min() < 0):
        where = np.argwhere(bad | (images < 0))[0]
        channel = int(where[-1])
        raise ValueError(f"image value {int(images[tuple(where)])} at {tuple(int(w) for w in where)} is "
                         f"not a {CHANNEL_NAMES[channel]} index (0..{int(CHANNEL_SIZES[channel]) - 1})")
    if directions.size and (directions.min() < 0 or directions.max() >= N_DIRECTIONS):
        where = np.argwhere((directions < 0) | (directions >= N_DIRECTIONS))[0]
        raise ValueError(f"direction {int(directions[tuple(where)])} at {tuple(int(w) for w in where)} "
                         f"is not 0..3")


def observation_indices(images: np.ndarray, directions: np.ndarray) -> np.ndarray:
    """Active feature indices, int64 ``[..., OBS_ACTIVE]``, of images ``[..., 7, 7, 3]`` and directions ``[...]``.

    Raises ValueError on a value outside MiniGrid's index ranges (it would
    silently alias another feature).
    """
    images = np.asarray(images)
    directions = np.asarray(directions)
    if images.shape[-3:] != (VIEW, VIEW, 3) or images.shape[:-3] != directions.shape:
        raise ValueError(f"expected images [..., 7, 7, 3] and directions [...] with the same leading "
                         f"shape, got {images.shape} and {directions.shape}")
    images = images.astype(np.int64)
    directions = directions.astype(np.int64)
    _check_values(images, directions)
    lead = directions.shape
    cells = images.reshape(*lead, N_CELLS * 3) + _BASES
    return np.concatenate([cells, (directions + DIRECTION_OFFSET)[..., None]], axis=-1)


def decode_observation(indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Images (uint8 ``[..., 7, 7, 3]``) and directions (int8 ``[...]``) of active indices ``[..., OBS_ACTIVE]``.

    The exact inverse of ``observation_indices``; ValueError if ``indices`` are
    not such a list.
    """
    indices = np.asarray(indices, dtype=np.int64)
    if indices.shape[-1:] != (OBS_ACTIVE,):
        raise ValueError(f"expected indices [..., {OBS_ACTIVE}], got shape {indices.shape}")
    values = indices[..., :-1] - _BASES
    directions = indices[..., -1] - DIRECTION_OFFSET
    if ((values < 0) | (values >= _SIZES)).any() or ((directions < 0) | (directions >= N_DIRECTIONS)).any():
        raise ValueError("indices are not observation_indices output: a slot holds an index of "
                         "another cell, channel or the wrong range")
    lead = indices.shape[:-1]
    return values.reshape(*lead, VIEW, VIEW, 3).astype(np.uint8), directions.astype(np.int8)


def _name_index(kind: str, name: str, table: dict[str, int]) -> int:
    if name not in table:
        raise ValueError(f"unknown {kind} {name!r}; valid {kind}s: {', '.join(table)}")
    return table[name]


def edit_cell(image: np.ndarray, row: int, col: int, object: str | None = None,
              colour: str | None = None, state: str | None = None) -> np.ndarray:
    """A copy of ``image`` ``[..., 7, 7, 3]`` with cell ``image[..., row, col]`` changed by name.

    ``object`` is a key of OBJECT_TO_IDX ("ball", "key", "wall", "empty", ...),
    ``colour`` of COLOR_TO_IDX ("red", ..., "grey"), ``state`` of STATE_TO_IDX
    ("open", "closed", "locked"; doors only); None leaves that channel alone.
    ``row, col`` index the array as MiniGrid stores it (``[x, y]``, see the
    module docstring). Leading batch dims are all edited alike.

    >>> img = np.zeros((7, 7, 3), np.uint8)
    >>> edit_cell(img, 3, 5, object="ball", colour="blue")[3, 5].tolist()
    [6, 2, 0]
    """
    image = np.asarray(image)
    if image.shape[-3:] != (VIEW, VIEW, 3):
        raise ValueError(f"expected an image [..., 7, 7, 3], got shape {image.shape}")
    if not (0 <= row < VIEW and 0 <= col < VIEW):
        raise ValueError(f"cell ({row}, {col}) is outside the 7x7 view (rows and columns 0..6)")
    out = image.copy()
    for channel, (kind, name, table) in enumerate((("object", object, OBJECT_TO_IDX),
                                                   ("colour", colour, COLOR_TO_IDX),
                                                   ("state", state, STATE_TO_IDX))):
        if name is not None:
            out[..., row, col, channel] = _name_index(kind, name, table)
    return out
