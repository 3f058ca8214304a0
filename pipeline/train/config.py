"""The settings of a training run: :class:`TrainConfig` and the LoRA settings of stage 2.

Their own module, so that the loop (:mod:`pipeline.train.loop`) and the stages
(:mod:`pipeline.train.stages`) both import them and neither imports the other's settings.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from pipeline.train.losses import LossConfig


@dataclass(frozen=True)
class LoraSettings:
    """LoRA adapters of stage 2 (the method: r=8, alpha=8, dropout 0.1)."""

    rank: int = 8
    alpha: float = 8.0
    dropout: float = 0.1


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a training run (JSON-serialisable).

    Attributes:
        model: Registry name.
        model_config: Registry constructor arguments.
        seed: Seed of initialisation, shuffling, augmentation and dropout.
        epochs: Maximum number of epochs.
        batch_size: Chips per step.
        lr: Stage-1 learning rate (whole model; Clay frozen).
        stage2_lr: Stage-2 learning rate of everything but LoRA.
        lora_lr: Stage-2 learning rate of the LoRA weights.
        stage1_epochs: Length of stage 1 for models with a Clay encoder.
        weight_decay: AdamW weight decay.
        grad_clip: Max gradient norm.
        patience: Epochs without validation improvement before stopping.
        augment: Random flips and 90-degree rotations.
        repeats: Passes over the train set per epoch, each with fresh augmentation (1 = method).
        intensity_jitter: Std of a random per-chip, per-channel gain (1 + N(0, s)) and offset
            (N(0, s), in z-units) applied to training inputs; 0 (the method) disables it.
        crop: Train on random ``crop`` x ``crop`` windows of the (augmented) chips, one window per
            batch; 0 (the method) trains on whole chips. The network is fully convolutional, so
            it still predicts whole chips.
        radiometric: Largest fraction of the Level-1C -> Level-2A shift applied to a training
            chip (drawn uniformly per chip); 0 (the method) disables it.
        swa_epochs: Average the weights at the end of each of the last ``swa_epochs`` epochs
            (equal weights: stochastic weight averaging, Izmailov et al. 2018), then recompute the
            BatchNorm statistics of the averaged weights over one augmented pass of the training
            batches; the averaged network is the result. 0 (the method) disables it. Only for
            one-stage models trained without a validation set (a fixed schedule).
        swa_lr: With ``swa_epochs``: None keeps the cosine schedule over all epochs (tail
            averaging); a value anneals the cosine from ``lr`` to ``swa_lr`` over the epochs
            before the averaging window and holds ``swa_lr`` constant inside it (the paper's
            SWA schedule).
        loss: Loss weights.
        lora: LoRA settings (rank, alpha, dropout).
        clay_checkpoint: Clay v1.5 weights for the encoder; None keeps the random initialisation.
        amp: Autocast on CUDA (ignored on CPU).
        progress: Show a tqdm bar.
    """

    model: str
    model_config: dict[str, Any]
    seed: int = 42
    epochs: int = 50
    batch_size: int = 8
    lr: float = 3e-4
    stage2_lr: float = 1e-4
    lora_lr: float = 3e-5
    stage1_epochs: int = 10
    weight_decay: float = 1e-3
    grad_clip: float = 1.0
    patience: int = 10
    augment: bool = True
    repeats: int = 1
    intensity_jitter: float = 0.0
    radiometric: float = 0.0
    crop: int = 0
    swa_epochs: int = 0
    swa_lr: float | None = None
    loss: LossConfig = field(default_factory=LossConfig)
    lora: LoraSettings = field(default_factory=LoraSettings)
    clay_checkpoint: str | None = None
    amp: bool = True
    progress: bool = True

    def fingerprint(self) -> str:
        """JSON of the settings that must match for a run to be resumed.

        The SWA settings appear only when SWA is on, so runs without it keep the fingerprints
        (and so the resumability) they had before the option existed.
        """
        raw = asdict(self)
        raw.pop("progress")
        if self.swa_epochs == 0 and self.swa_lr is None:
            raw.pop("swa_epochs")
            raw.pop("swa_lr")
        return json.dumps(raw, sort_keys=True, default=str)
