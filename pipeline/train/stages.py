"""Training stages of the method: which parameters train, at which learning rate, with LoRA or not.

Stage 1: the Clay encoder (any submodule of class ``ClayEncoder``) is frozen and has no LoRA;
every other parameter trains at ``lr``. Stage 2: LoRA adapters are inserted into Clay
(``pipeline.models.lora.apply_lora``); LoRA weights (parameter names containing ``lora``) train at
``lora_lr``, every other non-Clay parameter at ``stage2_lr``; Clay's own weights stay frozen.
Models without Clay train in a single stage at ``lr``. Each stage builds a fresh AdamW and a
cosine schedule over the stage's epochs.
"""

from __future__ import annotations

import inspect
import logging
from typing import Any

import torch
from torch import nn

from pipeline.errors import UserError
from pipeline.train.config import LoraSettings, TrainConfig

log = logging.getLogger(__name__)

CLAY_CLASS_NAME = "ClayEncoder"


def clay_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Submodules of ``model`` that are Clay encoders, with their qualified names."""
    return [(name, m) for name, m in model.named_modules() if type(m).__name__ == CLAY_CLASS_NAME]


def has_clay(model: nn.Module) -> bool:
    """Whether ``model`` holds a Clay encoder (and so trains in two stages)."""
    return bool(clay_modules(model))


def _clay_parameter_names(model: nn.Module) -> set[str]:
    names: set[str] = set()
    for prefix, module in clay_modules(model):
        names.update(f"{prefix}.{n}" if prefix else n for n, _ in module.named_parameters())
    return names


def load_clay_weights(model: nn.Module, checkpoint: str | None) -> None:
    """Load Clay v1.5 weights into every Clay encoder of ``model`` (no-op when ``checkpoint`` is None).

    Raises:
        UserError: If the model has no Clay encoder, or the checkpoint cannot be loaded.
    """
    if checkpoint is None:
        return
    found = clay_modules(model)
    if not found:
        raise UserError("--clay-checkpoint was given but the model has no Clay encoder")
    from pipeline.models.clay import ClayEncoder

    try:
        pretrained = ClayEncoder.from_checkpoint(checkpoint)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise UserError(f"{checkpoint}: cannot load Clay weights ({exc})") from exc
    for _, module in found:
        try:
            module.load_state_dict(pretrained.state_dict(), strict=True)
        except RuntimeError as exc:
            raise UserError(f"{checkpoint}: Clay weights do not fit the model's encoder "
                            f"({str(exc).splitlines()[0]})") from exc


def _call_with_supported(func: Any, model: nn.Module, settings: LoraSettings) -> Any:
    """Call ``func(model, ...)`` passing the LoRA settings under whichever names it accepts."""
    params = inspect.signature(func).parameters
    aliases = {
        "rank": ("rank", "r"), "alpha": ("alpha", "lora_alpha"), "dropout": ("dropout", "lora_dropout"),
    }
    kwargs: dict[str, Any] = {}
    for key, names in aliases.items():
        for name in names:
            if name in params:
                kwargs[name] = getattr(settings, key)
                break
    return func(model, **kwargs)


def enter_stage2(model: nn.Module, settings: LoraSettings) -> None:
    """Insert LoRA adapters into the Clay encoder(s) of ``model``, in place."""
    from pipeline.models.lora import apply_lora

    result = _call_with_supported(apply_lora, model, settings)
    if isinstance(result, nn.Module) and result is not model:
        raise UserError("pipeline.models.lora.apply_lora returned a new module; training needs in-place LoRA")
    n_lora = sum("lora" in n for n, _ in model.named_parameters())
    log.info("stage 2: LoRA inserted (%d LoRA tensors)", n_lora)


def merge(model: nn.Module) -> nn.Module:
    """Fold LoRA adapters into the base weights (no-op for a model without LoRA)."""
    if not any("lora" in n for n, _ in model.named_parameters()):
        return model
    from pipeline.models.lora import merge_lora

    merged = merge_lora(model)
    return merged if isinstance(merged, nn.Module) else model


def build_optimizer(
    model: nn.Module, config: TrainConfig, stage: int, two_stage: bool
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """AdamW and cosine schedule of ``stage``; sets ``requires_grad`` accordingly.

    Returns:
        ``(optimizer, scheduler)``; the scheduler steps once per epoch.
    """
    clay_names = _clay_parameter_names(model) if two_stage else set()
    base: list[nn.Parameter] = []
    lora: list[nn.Parameter] = []
    for name, param in model.named_parameters():
        if "lora" in name:
            param.requires_grad_(stage == 2)
            lora.append(param)
        elif name in clay_names:
            param.requires_grad_(False)
        else:
            param.requires_grad_(True)
            base.append(param)
    if not two_stage:
        groups = [{"params": base, "lr": config.lr}]
        length = config.epochs
    elif stage == 1:
        groups = [{"params": base, "lr": config.lr}]
        length = min(config.stage1_epochs, config.epochs)
    else:
        groups = [{"params": base, "lr": config.stage2_lr}]
        if lora:
            groups.append({"params": lora, "lr": config.lora_lr})
        length = config.epochs - config.stage1_epochs
    optimizer = torch.optim.AdamW(groups, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(length, 1))
    return optimizer, scheduler
