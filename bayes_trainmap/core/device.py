"""The one device resolver: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` -> a torch device.

The engines (``inference``, ``tasks``) take concrete torch devices; ``"auto"`` is resolved
once, at the boundary where a user's option enters (the CLI, ``fit``, ``collect``).
"""

from __future__ import annotations

import torch

from bayes_trainmap.core.defaults import is_device_name
from bayes_trainmap.core.errors import BayesTrainmapError

__all__ = ["resolve_device"]


def resolve_device(
    device: str | torch.device = "auto", *, error: type[BayesTrainmapError] = BayesTrainmapError
) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; an explicit CUDA request without CUDA is refused.

    Parameters
    ----------
    device : {"auto", "cpu", "cuda", "cuda:N"} or torch.device
    error : type
        The :class:`BayesTrainmapError` subclass to raise (e.g. ``TaskError`` in ``collect``).

    Returns
    -------
    torch.device
    """
    if isinstance(device, torch.device):
        return device
    text = str(device)
    if not is_device_name(text):
        raise error(f"device must be 'auto', 'cpu' or 'cuda[:N]', got {device!r}")
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if text.startswith("cuda") and not torch.cuda.is_available():
        raise error(f"device {text!r} requested but CUDA is not available; use --device cpu or auto")
    return torch.device(text)
