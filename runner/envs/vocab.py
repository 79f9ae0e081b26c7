"""BabyAI / MiniGrid instructions as a small vocabulary of their own.

Every mission a BabyAI level or a plain MiniGrid env produces is a sequence of
words from ``WORDS``; "," is a word of its own ("go to the red ball, then open
the door"). Id 0 is padding. The order of ``WORDS`` is part of every saved
checkpoint: append new words at the end, never reorder or remove.

>>> encode_mission("go to the red ball", length=6)
array([ 1,  2, 13, 15, 22,  0])
>>> decode_mission([1, 2, 13, 15, 22, 0])
'go to the red ball'
"""
from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence

import numpy as np

WORDS: tuple[str, ...] = (
    "<pad>",
    # BabyAI grammar (minigrid/envs/babyai/core/verifier.py surface forms):
    # "go to X", "pick up X", "open X", "put X next to Y",
    # "A and B", "A, then B", "A after you B"
    "go", "to", "pick", "up", "open", "put", "next",          # 1-7
    "and", "then", "after", "you", ",",                        # 8-12
    "the", "a",                                                # 13-14
    "red", "green", "blue", "purple", "yellow", "grey",       # 15-20  (COLOR_TO_IDX order)
    "box", "ball", "key", "door", "object",                   # 21-25
    "on", "your", "left", "right", "in", "front", "of", "behind",  # 26-33 locations
    # plain MiniGrid missions (minigrid/envs/*.py): "get to the green goal square",
    # "avoid the lava and ...", "find the opening and ...", "use the key to open the
    # door and then get to the goal", "reach the goal", "traverse the rooms/maze to
    # get to the goal", "go to the matching object at the end of the hallway",
    # "get the red key from the blue room, unlock the red door and go to the goal",
    # "put the red ball near the blue key", "you must fetch a red key", ...
    "get", "goal", "square", "avoid", "lava", "find", "opening",    # 34-40
    "use", "reach", "traverse", "rooms", "maze", "matching", "at",  # 41-47
    "end", "hallway", "from", "room", "unlock", "near", "fetch", "must",  # 48-55
)

WORD_TO_ID: dict[str, int] = {w: i for i, w in enumerate(WORDS)}
PAD_ID = 0

if len(WORD_TO_ID) != len(WORDS):  # pragma: no cover - guards edits to WORDS
    raise AssertionError("WORDS holds a duplicate")


def tokenize(mission: str) -> list[str]:
    """The words of a mission: lower-cased, split on spaces, "," a word of its own.

    >>> tokenize("Go to the red ball, then open a door")
    ['go', 'to', 'the', 'red', 'ball', ',', 'then', 'open', 'a', 'door']
    """
    return mission.lower().replace(",", " , ").split()


def _unknown_word_message(word: str, mission: str) -> str:
    close = difflib.get_close_matches(word, WORDS[1:], n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return (f"unknown word {word!r} in mission {mission!r}: not in the BabyAI/MiniGrid "
            f"instruction vocabulary{hint}")


def encode_mission(mission: str, length: int | None = None) -> np.ndarray:
    """Word ids (int64) of a mission, right-padded with 0 to ``length`` when given.

    Raises ValueError on a word outside ``WORDS`` (naming it, the mission and a
    close match) or when the mission has more than ``length`` words.

    >>> encode_mission("open the door")
    array([ 5, 13, 24])
    """
    words = tokenize(mission)
    ids = []
    for word in words:
        if word not in WORD_TO_ID:
            raise ValueError(_unknown_word_message(word, mission))
        ids.append(WORD_TO_ID[word])
    if length is not None:
        if len(ids) > length:
            raise ValueError(f"mission {mission!r} has {len(ids)} words, more than the "
                             f"mission length {length}")
        ids += [PAD_ID] * (length - len(ids))
    return np.asarray(ids, dtype=np.int64)


def encode_missions(missions: Sequence[str], length: int | None = None) -> np.ndarray:
    """Word ids [n, length] (int64) of many missions; length defaults to the longest.

    >>> encode_missions(["open the door", "go to the red ball"]).shape
    (2, 5)
    """
    if length is None:
        length = max((len(tokenize(m)) for m in missions), default=0)
    out = np.zeros((len(missions), length), dtype=np.int64)
    for i, mission in enumerate(missions):
        out[i] = encode_mission(str(mission), length)
    return out


def decode_mission(ids: Iterable[int] | np.ndarray) -> str:
    """The mission text of word ids, padding dropped ("," attached to the word before it).

    >>> decode_mission(encode_mission("go to the red ball, then open the door"))
    'go to the red ball, then open the door'
    """
    words = []
    for i in np.asarray(ids, dtype=np.int64).reshape(-1).tolist():
        if not 0 <= i < len(WORDS):
            raise ValueError(f"word id {i} is outside the vocabulary (0..{len(WORDS) - 1})")
        if i != PAD_ID:
            words.append(WORDS[i])
    return " ".join(words).replace(" ,", ",")


def mission_has_word(mission: str, word: str) -> bool:
    """Whether a mission holds ``word`` as one of its words (as ``tokenize`` splits them).

    >>> mission_has_word("go to the red ball, then open a door", "ball"), mission_has_word("go to the reddish box", "red")
    (True, False)
    """
    return word.lower() in tokenize(mission)


def swap_word(mission: str, old: str, new: str) -> str:
    """The mission with every word ``old`` replaced by ``new`` (words as ``tokenize`` splits them).

    >>> swap_word("go to the red ball, then pick up the red key", "red", "blue")
    'go to the blue ball, then pick up the blue key'
    """
    words = [new.lower() if w == old.lower() else w for w in tokenize(mission)]
    return " ".join(words).replace(" ,", ",")


def mission_words_ok(mission: str) -> str | None:
    """None if every word of the mission is in the vocabulary, else the error message."""
    for word in tokenize(mission):
        if word not in WORD_TO_ID:
            return _unknown_word_message(word, mission)
    return None
