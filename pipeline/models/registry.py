"""Model registry: one name per model of the method, built from a JSON-serialisable config.

``build_model(name, config)`` calls the model's constructor with ``config`` as keyword
arguments, so a checkpoint's ``CheckpointMeta.config`` rebuilds exactly the trained model.
Configs hold only JSON types (lists rather than tuples are fine).

Every model's ``forward(x)`` takes ``x: float32 [B, C, H, W]`` with ``C`` input bands and returns
logits ``[B, 1, H, W]`` (the model input contract of ``docs/architecture.md``).
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Any, Final

from torch import nn

from pipeline.bands import SWEEP_BANDS

#: Registered model names, in the order the method presents them.
MODEL_NAMES: Final[tuple[str, ...]] = ("unet", "clay", "hybrid")

#: ``name -> (module, class)``; imported lazily so that importing the registry stays cheap.
_CONSTRUCTORS: Final[dict[str, tuple[str, str]]] = {
    "unet": ("pipeline.models.unet", "UNet"),
    "clay": ("pipeline.models.clay_seg", "ClaySegmenter"),
    "hybrid": ("pipeline.models.hybrid", "HybridUNetClay"),
}


def _check_name(name: str) -> None:
    if name not in _CONSTRUCTORS:
        raise KeyError(f"unknown model {name!r}; known models: {', '.join(MODEL_NAMES)}")


def model_class(name: str) -> type[nn.Module]:
    """Return the constructor registered under ``name``.

    Raises:
        KeyError: If ``name`` is not one of :data:`MODEL_NAMES` (the message names them).

    """
    _check_name(name)
    module_name, class_name = _CONSTRUCTORS[name]
    cls: type[nn.Module] = getattr(importlib.import_module(module_name), class_name)
    return cls


def build_model(name: str, config: dict[str, Any]) -> nn.Module:
    """Build the model registered as ``name`` with ``config`` as constructor keyword arguments.

    Args:
        name: One of :data:`MODEL_NAMES`.
        config: Keyword arguments, e.g. from :func:`default_config` or a checkpoint's metadata.

    Returns:
        The model (training mode, random initialisation, CPU).

    Raises:
        KeyError: For an unknown name (the message lists the known ones).
        TypeError: For an unknown or missing constructor argument.

    """
    return model_class(name)(**dict(config))


def default_config(name: str, bands: Sequence[str] = SWEEP_BANDS) -> dict[str, Any]:
    """Return the paper's configuration of model ``name`` for input channels ``bands``.

    * ``unet``: ``in_channels = len(bands)``, widths 64-128-256-512, dropout 0.1.
    * ``clay``: Clay v1.5 large as primary encoder on the S2 bands among ``bands``, terrain
      fusion on ``slope``/``dem``.
    * ``hybrid``: the U-Net on all ``bands`` plus Clay v1.5 large context at the bottleneck.

    Raises:
        KeyError: For an unknown name.

    """
    _check_name(name)
    if name == "unet":
        return {"in_channels": len(bands), "widths": [64, 128, 256, 512], "dropout": 0.1}
    module = importlib.import_module(_CONSTRUCTORS[name][0])
    config: dict[str, Any] = module.default_config(list(bands))
    return config
