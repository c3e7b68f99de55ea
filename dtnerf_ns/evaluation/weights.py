"""Pretrained weights for the learned metrics (LPIPS, FID, SyncNet): from the local torch hub cache or a file the user
names, never downloaded (an offline download would hang or fail half-way, and a metric computed with random weights
would be meaningless). A missing file raises :class:`WeightsUnavailable`, which the evaluation reports as the metric's
reason for being unavailable."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional, Sequence

import torch


class WeightsUnavailable(Exception):
    """The weights a metric needs are not on this machine; the message says which file and where to put it."""


def hub_checkpoint_dir() -> Path:
    """Where ``torch.hub.load_state_dict_from_url`` caches downloads (``$TORCH_HOME/hub/checkpoints``)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def find_weights(user_path: Optional[Path], cached_names: Sequence[str], what: str, option: str) -> Path:
    """The user's file when given (it must exist), else the first of ``cached_names`` in the torch hub cache.

    Args:
        user_path: File named on the command line, or None.
        cached_names: File names the weights have in the torch hub cache (the basename of their download URL).
        what: Human name of the weights, for messages.
        option: Command-line option that takes a path to them, for messages.
    """
    if user_path is not None:
        if not Path(user_path).is_file():
            raise WeightsUnavailable(f"{what}: {user_path} is not a file")
        return Path(user_path)
    cache = hub_checkpoint_dir()
    for name in cached_names:
        if (cache / name).is_file():
            return cache / name
    names = " or ".join(cached_names)
    raise WeightsUnavailable(f"{what}: {names} not in the torch hub cache {cache}; pass {option} PATH")


def first_line(err: BaseException) -> str:
    """An exception as one short line (for JSON reasons and console messages)."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def load_state_dict(path: Path, what: str) -> Dict[str, torch.Tensor]:
    """A checkpoint's tensors (``weights_only``: a weights file cannot run code); unreadable -> WeightsUnavailable."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any failure to read means "no weights"
        raise WeightsUnavailable(f"{what}: cannot read {path}: {first_line(err)}") from err
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]  # some checkpoints wrap the tensors
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsUnavailable(f"{what}: {path} does not hold a state dict of tensors")
    return state


def load_into(module: torch.nn.Module, state: Dict[str, torch.Tensor], path: Path, what: str) -> None:
    """Strict ``load_state_dict``; keys or shapes that do not fit -> WeightsUnavailable naming the file."""
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as err:
        detail = " ".join(str(err).split())
        raise WeightsUnavailable(f"{what}: {path} does not fit the network ({detail[:200]})") from err
