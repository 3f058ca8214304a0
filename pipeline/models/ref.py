"""The reference to a model that travels from the client to the workers (never the weights).

Light on purpose: the pure sweep plan holds a :class:`ModelRef`, and importing this module
imports no torch (tested).
"""

from __future__ import annotations

from dataclasses import dataclass

#: Prefix of the names under which the model's worker plugin is registered.
PLUGIN_PREFIX = "landslide-model-"


def plugin_name(sha256: str) -> str:
    """Name under which the worker plugin for a checkpoint is registered."""
    return PLUGIN_PREFIX + sha256[:16]


@dataclass(frozen=True)
class ModelRef:
    """The one reference to a model that travels to the workers (never the weights).

    Attributes:
        checkpoint: Path of the checkpoint, readable on every worker.
        sha256: Its SHA-256; a worker holding a different file refuses it. Also names the
            worker plugin that holds the loaded model.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``; ``"auto"`` is resolved on the worker, where
            the model runs (a CPU-only client may drive GPU workers).
        batch_size: Chips per forward pass.
    """

    checkpoint: str
    sha256: str
    device: str = "auto"
    batch_size: int = 8

    @property
    def plugin_name(self) -> str:
        """Name under which the worker plugin of this model is registered."""
        return plugin_name(self.sha256)
