"""Pretrained Hugging Face causal LMs: find one, size it from its config.json, tokenize text, load it.

A model is named by a folder (``save_pretrained`` output: config.json, safetensors
weights, tokenizer files) or by a hub name. A name that is not a folder is looked
up in the Hugging Face cache first; the hub is asked only when the name is not
cached, and only after a short probe says it can be reached, so that an offline
machine refuses at once instead of waiting out the hub client's retries.

Torch-free at import: ``runner validate`` sizes a model from config.json with the
json module. Tokenizing (text data, ``strings:`` of a metric) loads the model's
tokenizer through ``transformers`` (which imports torch); only pretrained specs
do that. The model itself is a TransformerLens 4 ``TransformerBridge`` booted by
``boot_transformers`` from the folder, in float32.

>>> sizes = sizes_of_config({"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "n_layer": 2,
...                          "n_embd": 32, "n_head": 4, "vocab_size": 50, "n_positions": 16}, "gpt2-tiny")
>>> sizes.n_layers, sizes.d_head, sizes.d_mlp, sizes.n_ctx, sizes.agent
(2, 8, 128, 16, False)
"""
from __future__ import annotations

import functools
import json
import os
import re
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable
from urllib.parse import urlparse

from runner.models.checkpoint import CheckpointError
from runner.models.sizes import ModelSizes

CONFIG = "config.json"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                   "vocab.json", "merges.txt", "tokenizer.model", "vocab.txt")
WEIGHTS = ("*.safetensors", "*.safetensors.index.json")
PICKLED = ("pytorch_model.bin", "pytorch_model.bin.index.json", "model.ckpt.index", "tf_model.h5", "flax_model.msgpack")
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}(/[\w.-]{1,96})?$")   # the hub's owner/name (or a bare name)
_PROBE_SECONDS = 3.0

# Where TransformerLens's config mapping reads each size, in its order (first key present wins).
_KEYS = {
    "d_model": ("n_embd", "hidden_size", "model_dim", "d_model", "hidden_dim"),
    "n_heads": ("n_head", "num_attention_heads", "num_heads", "n_heads"),
    "n_layers": ("n_layer", "num_hidden_layers", "num_transformer_layers", "num_layers", "n_layers", "n_blocks"),
    "d_vocab": ("vocab_size",),
    "n_ctx": ("n_positions", "max_position_embeddings", "max_context_length", "max_length", "seq_length",
              "max_seq_len", "max_sequence_length"),
    "d_mlp": ("n_inner", "intermediate_size", "mlp_hidden_size"),
    "d_head": ("head_dim",),
}
# Architectures whose blocks need nothing from the model's own forward (positions are embedded before block 0,
# attention masks itself): runner's passes start at the edited block from a cached residual, which is exact for
# these (tests/test_pretrained.py checks it against full forwards). Rotary or ALiBi positions (Llama, Pythia,
# BLOOM, ...) and masks the model hands to its blocks (OPT) come from that forward: such blocks run alone are
# silently wrong, so they are refused.
ARCHITECTURES = ("gpt2", "gpt_neo", "gpt_bigcode")


class PretrainedError(CheckpointError):
    """A pretrained model that cannot be found, read or used (the message says why and what to do)."""


@dataclass(frozen=True)
class PretrainedSizes(ModelSizes):
    """The sizes of a pretrained model, with the folder its config, tokenizer and weights are read from."""

    folder: str = ""
    n_kv_heads: int | None = None     # heads of hook_k and hook_v, where fewer than n_heads (multi-query attention)

    def tokenizer(self) -> Any:
        """The model's tokenizer (loaded once per process)."""
        return tokenizer(self.folder)


# ---------------------------------------------------------------- finding a model

def locate(name: str, candidate: Path, weights: bool = False) -> Path:
    """The local folder of a pretrained model: ``candidate`` (``name`` resolved as a path) or a hub snapshot.

    A folder is used as it is, offline. Otherwise ``name`` must be a hub name: its cached
    snapshot is used, or, when the hub can be reached, config and tokenizer files are fetched
    (and, with ``weights``, the safetensors weights). Raises PretrainedError saying why not.
    """
    if candidate.is_dir():
        return _checked_folder(candidate, name)
    if candidate.exists():
        raise PretrainedError(f"{candidate} is a file; a pretrained model is a folder (config.json, safetensors "
                              "weights, tokenizer files) or a Hugging Face hub name")
    if not _REPO_ID.match(name) or ".." in name or "--" in name:
        raise PretrainedError(f"no model folder {candidate} (and {name!r} is not a Hugging Face hub name)")
    return _from_hub(name, candidate, weights)


def _checked_folder(folder: Path, name: str) -> Path:
    if not (folder / CONFIG).is_file():
        raise PretrainedError(f"{folder} has no {CONFIG}: a pretrained model folder is what save_pretrained writes")
    if not weight_files(folder):
        pickled = [p for p in PICKLED if (folder / p).exists()]
        why = (f"its weights are pickles ({', '.join(pickled)}), which runner never loads; re-save them with "
               "save_pretrained (safetensors is its default)") if pickled else "it holds no *.safetensors weights"
        raise PretrainedError(f"cannot load {name!r} from {folder}: {why}")
    return folder


def _from_hub(name: str, candidate: Path, weights: bool) -> Path:
    from huggingface_hub import constants, try_to_load_from_cache

    cached = try_to_load_from_cache(name, CONFIG)
    folder = Path(cached).parent if isinstance(cached, str) else None
    if folder is not None and (weight_files(folder) or any((folder / p).exists() for p in PICKLED)):
        return _checked_folder(folder, name)
    if folder is not None and not weights:  # config and tokenizer cached: enough to plan; weights come at run time
        return folder
    if not hub_reachable():
        what = (f"the cached snapshot of {name!r} ({folder}) holds no weights" if folder is not None else
                f"no model folder {candidate}, and {name!r} is not in the Hugging Face cache "
                f"({constants.HF_HUB_CACHE})")
        why = "HF_HUB_OFFLINE is set" if _offline() else "no connection"
        raise PretrainedError(
            f"{what}, and the hub cannot be reached from here ({why}): download it where there is a network "
            f"(huggingface-cli download {name}, or save_pretrained into a folder) and name that folder, or run "
            "where the hub is reachable")
    return _download(name, weights)


def _download(name: str, weights: bool) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError

    patterns = [CONFIG, "generation_config.json", *TOKENIZER_FILES, *(WEIGHTS if weights else ())]
    try:
        folder = Path(snapshot_download(name, allow_patterns=patterns, etag_timeout=_PROBE_SECONDS))
    except GatedRepoError:
        raise PretrainedError(f"{name!r} is gated on the Hugging Face hub: accept its terms and log in "
                              "(huggingface-cli login), or name a local folder") from None
    except (RepositoryNotFoundError, RevisionNotFoundError):
        raise PretrainedError(f"no model {name!r} on the Hugging Face hub, and no folder of that name") from None
    except Exception as exc:  # the hub client's own errors (HTTP, disk): said in one line
        raise PretrainedError(f"could not fetch {name!r} from the Hugging Face hub: {type(exc).__name__}: "
                              f"{str(exc).splitlines()[0] if str(exc) else ''}") from None
    if not (folder / CONFIG).is_file():
        raise PretrainedError(f"{name!r} on the Hugging Face hub has no {CONFIG}: not a transformers model")
    return _checked_folder(folder, name) if weights else folder


def _offline() -> bool:
    return any(os.environ.get(v, "").upper() in ("1", "ON", "YES", "TRUE") for v in ("HF_HUB_OFFLINE",
                                                                                      "TRANSFORMERS_OFFLINE"))


@functools.lru_cache(maxsize=1)
def hub_reachable() -> bool:
    """Whether the hub (or the HTTPS proxy in between) accepts a connection within a few seconds (once a process).

    The hub client retries a failed lookup for about 20 s; this answers in at most ``_PROBE_SECONDS``.
    """
    if _offline():
        return False
    from huggingface_hub import constants

    proxy = next((os.environ[v] for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy") if os.environ.get(v)),
                 None)
    url = urlparse(proxy if proxy else constants.ENDPOINT)
    host, port = url.hostname, url.port or (443 if url.scheme == "https" else 80)
    answer: list[bool] = []

    def probe() -> None:  # in a thread: name resolution has no timeout of its own
        try:
            socket.create_connection((host, port), timeout=_PROBE_SECONDS).close()
            answer.append(True)
        except OSError:
            answer.append(False)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(_PROBE_SECONDS)
    return bool(answer and answer[0])


def weight_files(folder: Path) -> list[Path]:
    """The safetensors weights of a model folder (and their index, when sharded)."""
    return sorted(p for pattern in WEIGHTS for p in folder.glob(pattern) if p.is_file())


def model_files(folder: Path) -> list[Path]:
    """Every file of a model folder that can change its numbers: config, weights, tokenizer."""
    names = [folder / CONFIG, *weight_files(folder), *(folder / t for t in TOKENIZER_FILES)]
    return [p for p in names if p.is_file()]


# ---------------------------------------------------------------- sizes

def read_sizes(folder: Path, name: str) -> PretrainedSizes:
    """The sizes of the model in ``folder`` from its config.json (no weights read, no torch)."""
    try:
        config = json.loads((folder / CONFIG).read_text())
    except (OSError, ValueError) as exc:
        raise PretrainedError(f"{folder / CONFIG} is not readable JSON ({exc})") from None
    if not isinstance(config, dict):
        raise PretrainedError(f"{folder / CONFIG} is not a transformers config (a JSON object)")
    return sizes_of_config(config, name, str(folder))


def sizes_of_config(config: dict[str, Any], name: str, folder: str = "") -> PretrainedSizes:
    """The sizes a transformers config gives a model, read as TransformerLens reads them."""
    archs = config.get("architectures") or []
    if archs and not any(str(a).endswith(("ForCausalLM", "LMHeadModel")) for a in archs):
        raise PretrainedError(f"{name!r} is a {archs[0]}, not a causal language model (…ForCausalLM, "
                              "…LMHeadModel): runner measures next-token logits")
    model_type = config.get("model_type")
    if model_type not in ARCHITECTURES:
        raise PretrainedError(
            f"{name!r} is a {model_type!r} model; runner runs pretrained {', '.join(ARCHITECTURES)} models: it starts "
            "a pass at the edited block from a cached residual, and other architectures' blocks need rotary or ALiBi "
            "positions or masks from the model's own forward (numbers would be silently wrong)")
    found = {size: next((config[k] for k in keys if config.get(k) is not None), None) for size, keys in _KEYS.items()}
    for size in ("d_model", "n_heads", "n_layers", "d_vocab"):
        if found[size] is None:
            raise PretrainedError(f"the config.json of {name!r} gives no {size} ({' or '.join(_KEYS[size])})")
    bad = [f"{size}={value!r}" for size, value in found.items()
           if value is not None and (type(value) is not int or value < 1)]
    if bad:
        raise PretrainedError(f"the config.json of {name!r} has sizes runner cannot read: {', '.join(bad)} "
                              "(a positive whole number each; per-layer sizes are not supported)")
    d_model, n_heads = found["d_model"], found["n_heads"]
    kv = 1 if config.get("multi_query") else config.get("num_key_value_heads")
    return PretrainedSizes(found["n_layers"], d_model, n_heads, found["d_head"] or d_model // n_heads,
                           found["d_mlp"] or 4 * d_model, found["d_vocab"], found["n_ctx"] or 2048,
                           folder=folder, n_kv_heads=kv if isinstance(kv, int) and 0 < kv < n_heads else None)


# ---------------------------------------------------------------- tokens

@functools.lru_cache(maxsize=8)
def _tokenizer(folder: str, stamp: tuple) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(folder)
    except Exception as exc:  # transformers says why in its own words: no tokenizer files, a missing package
        raise PretrainedError(f"cannot load the tokenizer of {folder}: {type(exc).__name__}: "
                              f"{str(exc).splitlines()[0] if str(exc) else ''}") from None


def tokenizer(folder: str | Path) -> Any:
    """The tokenizer saved with a model (loaded again when its files change)."""
    folder = Path(folder)
    stamp = tuple((t, (folder / t).stat().st_mtime_ns) for t in TOKENIZER_FILES if (folder / t).is_file())
    return _tokenizer(str(folder), stamp)


def encode(tok: Any, texts: Iterable[str]) -> list[list[int]]:
    """Token ids of each text, BOS first as TransformerLens's ``to_tokens`` puts it (if the tokenizer has one)."""
    rows = tok(list(texts), add_special_tokens=False)["input_ids"]
    bos = [tok.bos_token_id] if tok.bos_token_id is not None else []
    return [bos + list(row) for row in rows]


def token_of(tok: Any, text: str) -> int:
    """The one token id ``text`` is in the tokenizer's vocabulary; ValueError when it is not exactly one token."""
    ids = tok(text, add_special_tokens=False)["input_ids"]
    if len(ids) != 1:
        pieces = tok.convert_ids_to_tokens(ids)
        raise ValueError(f"{text!r} is {len(ids)} tokens of the model's tokenizer ({pieces}), not one")
    return int(ids[0])


# ---------------------------------------------------------------- loading

def load(folder: Path, device: str = "cpu") -> Any:
    """The TransformerBridge of the model in ``folder`` (float32, eval mode, TransformerLens hook names)."""
    import torch
    from transformer_lens.model_bridge import TransformerBridge
    import transformer_lens.model_bridge.sources  # noqa: F401  (attaches boot_transformers)
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()   # no "Loading weights" bar in a run's output
    try:
        bridge = TransformerBridge.boot_transformers(str(folder), device=device, dtype=torch.float32)
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    return bridge.eval()
