"""The training loop of the method: stages, early stopping, per-epoch resumable state.

* Models without a Clay encoder (``unet``) train in one stage: AdamW (lr 3e-4, wd 1e-3), a
  cosine schedule over all epochs.
* Models with a Clay encoder (``clay``, ``hybrid``) train in two stages. Stage 1 (the first
  ``stage1_epochs`` epochs): Clay frozen, no LoRA, the rest at lr 3e-4. Stage 2: LoRA inserted
  into Clay, the rest at 1e-4 and the LoRA weights at 3e-5. AdamW and the cosine schedule are
  rebuilt at the start of each stage.
* The checkpoint is chosen by validation F1 at 0.70
  (:data:`~pipeline.train.metrics.SELECTION_THRESHOLD`);
  training stops after ``patience`` epochs without improvement. The patience count restarts
  when stage 2 begins (as in the authors' notebook), so the LoRA stage always gets ``patience``
  epochs, and stage 1 never stops the run early (the schedule always reaches stage 2). Without
  a validation set (``val_set=None``, e.g. a cross-validation fold trained for a fixed number
  of epochs) every epoch runs and the last weights are kept.
* Every epoch writes ``state.pt`` (model, optimiser, scheduler, epoch, the torch/numpy/python
  RNG states, best score, history), atomically; ``best.safetensors`` holds the best weights so
  far and ``metrics.jsonl`` one line per epoch. A killed run continues with ``resume=True`` and
  gives the same result as an uninterrupted one on CPU: every epoch re-seeds its shuffling and
  augmentation generators from ``(seed, epoch)``, and the saved global RNG states are restored,
  so what draws from them between epochs (the LoRA initialisation at the stage boundary,
  dropout) continues exactly.
* ``radiometric`` > 0 shifts each training chip a random fraction (uniform in [0, radiometric])
  of the way from Level-1C to Level-2A (:mod:`pipeline.train.domain`).
* ``swa_epochs`` > 0 (one-stage models, no validation set): stochastic weight averaging
  (Izmailov et al. 2018). After each of the last ``swa_epochs`` epochs the weights join an
  equal-weight running mean (:class:`torch.optim.swa_utils.AveragedModel`; the mean lives in
  ``state.pt``, so a resumed run averages the same weights); after the last epoch the BatchNorm
  statistics of the mean are recomputed (:func:`torch.optim.swa_utils.update_bn`) over one more
  pass of the training batches, augmented like the epochs' (flips, crops, jitter, L2A shift,
  seeded from ``(seed, epochs)``), and the averaged network is the result: one network, the
  same FLOPs. ``swa_lr`` None keeps the cosine schedule; a value anneals to ``swa_lr`` before the
  window and holds it inside (:func:`swa_schedule`).
* AMP (bf16, or fp16 with a gradient scaler) on CUDA only; fp32 and deterministic algorithms on CPU.
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch.optim.swa_utils import AveragedModel, update_bn
from tqdm import tqdm

from pipeline.errors import UserError
from pipeline.models.checkpoint import IDENTITY, Calibration
from pipeline.models.registry import build_model
from pipeline.store.atomic import atomic_output, write_atomic
from pipeline.train import stages
from pipeline.train.config import TrainConfig
from pipeline.train.data import ChipSet, augment
from pipeline.train.domain import l2a_like
from pipeline.train.losses import SegmentationLoss
from pipeline.train.metrics import SELECTION_THRESHOLD, ConfusionAccumulator, Scores

log = logging.getLogger(__name__)

STATE_FILE = "state.pt"
BEST_FILE = "best.safetensors"
HISTORY_FILE = "metrics.jsonl"


@dataclass
class FitResult:
    """Outcome of :func:`fit`: the best model (weights loaded, LoRA merged) and the history."""

    model: nn.Module
    best_epoch: int
    best_val_f1: float
    epochs_run: int
    history: list[dict[str, Any]]


def _epoch_seed(seed: int, epoch: int, stream: int) -> int:
    return (seed * 1_000_003 + epoch * 7919 + stream) % (2**63 - 1)


def configure_determinism(device: torch.device) -> None:
    """Deterministic kernels where PyTorch has them (warn where it does not)."""
    torch.use_deterministic_algorithms(True, warn_only=True)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = False


def _autocast(device: torch.device, enabled: bool) -> Any:
    if device.type == "cuda" and enabled:
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype)
    return torch.autocast(device.type, enabled=False)


@torch.no_grad()
def logit_batches(
    model: nn.Module, dataset: ChipSet, batch_size: int, device: torch.device, amp: bool = True,
    images: torch.Tensor | None = None,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield ``(logits, masks)`` per batch (float32, CPU), in dataset order, model in eval mode.

    ``images`` replaces ``dataset.images`` (e.g. the same chips shifted to Level-2A).
    """
    model.eval()
    source = dataset.images if images is None else images
    for start in range(0, len(dataset), batch_size):
        x = source[start : start + batch_size].to(device)
        with _autocast(device, amp):
            logits = model(x)
        yield logits.float().cpu(), dataset.masks[start : start + batch_size]


def predict_batches(
    model: nn.Module, dataset: ChipSet, batch_size: int, device: torch.device, amp: bool = True,
    calibration: Calibration = IDENTITY,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield ``(probabilities, masks)`` per batch, ``calibration`` applied to the logits."""
    for logits, mask in logit_batches(model, dataset, batch_size, device, amp):
        yield calibration.probabilities(logits), mask


def evaluate_counts(
    model: nn.Module, dataset: ChipSet, thresholds: tuple[float, ...], batch_size: int, device: torch.device,
    amp: bool = True, calibration: Calibration = IDENTITY,
) -> ConfusionAccumulator:
    """Pixel counts over the whole ``dataset`` at each threshold (of calibrated probabilities)."""
    acc = ConfusionAccumulator(thresholds)
    for prob, mask in predict_batches(model, dataset, batch_size, device, amp, calibration):
        acc.update(prob, mask)
    return acc


def train_batches(
    config: TrainConfig, train_set: ChipSet, epoch: int
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The training batches ``(x, y)`` of ``epoch`` (CPU): shuffled, augmented, cropped, jittered.

    Drawn only from generators seeded by ``(config.seed, epoch)``: the same call gives the same
    batches (the global RNG is not touched).
    """
    shuffle_gen = torch.Generator().manual_seed(_epoch_seed(config.seed, epoch, 1))
    order = torch.cat([torch.randperm(len(train_set), generator=shuffle_gen)
                       for _ in range(max(config.repeats, 1))])
    aug_gen = torch.Generator().manual_seed(_epoch_seed(config.seed, epoch, 2))
    for start in range(0, len(order), config.batch_size):
        idx = order[start : start + config.batch_size]
        x, y = train_set.images[idx], train_set.masks[idx]
        if config.augment:
            x, y = augment(x, y, aug_gen)
        if 0 < config.crop < x.shape[-1]:
            top, left = (int(v) for v in torch.randint(0, x.shape[-1] - config.crop + 1, (2,),
                                                       generator=aug_gen))
            x = x[..., top : top + config.crop, left : left + config.crop]
            y = y[..., top : top + config.crop, left : left + config.crop]
        if config.intensity_jitter > 0:
            shape = (x.shape[0], x.shape[1], 1, 1)
            gain = 1.0 + config.intensity_jitter * torch.randn(shape, generator=aug_gen)
            x = x * gain + config.intensity_jitter * torch.randn(shape, generator=aug_gen)
        if config.radiometric > 0:
            frac = config.radiometric * torch.rand((x.shape[0], 1), generator=aug_gen)
            x = l2a_like(x, train_set.bands, train_set.stats.mean, train_set.stats.std, frac)
        yield x, y


def swa_schedule(optimizer: torch.optim.Optimizer, config: TrainConfig) -> torch.optim.lr_scheduler.LambdaLR:
    """Cosine from ``lr`` to ``swa_lr`` over the epochs before the SWA window, then ``swa_lr``."""
    if config.swa_lr is None:
        raise ValueError("swa_schedule needs config.swa_lr")
    ratio = config.swa_lr / config.lr
    decay = config.epochs - config.swa_epochs

    def factor(epoch: int) -> float:
        if epoch >= decay:
            return ratio
        return ratio + (1.0 - ratio) * 0.5 * (1.0 + math.cos(math.pi * epoch / decay))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def check_swa(config: TrainConfig, two_stage: bool, has_validation: bool) -> None:
    """Reject SWA settings the loop cannot honour.

    Raises:
        UserError: If ``swa_epochs`` is outside ``[0, epochs]``, ``swa_lr`` is not positive or is
            given without ``swa_epochs``, or SWA is asked of a two-stage model or of a run that
            selects on a validation set.
    """
    if not 0 <= config.swa_epochs <= config.epochs:
        raise UserError(f"swa_epochs must be between 0 and epochs ({config.epochs}), not {config.swa_epochs}")
    if config.swa_lr is not None and (config.swa_lr <= 0 or config.swa_epochs == 0):
        raise UserError("swa_lr must be positive and needs swa_epochs > 0")
    if config.swa_epochs and two_stage:
        raise UserError("weight averaging (swa_epochs) is implemented for one-stage models only")
    if config.swa_epochs and has_validation:
        raise UserError(
            "weight averaging (swa_epochs) averages a fixed schedule: train without a validation set"
        )


def _rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {
        "torch_rng": torch.get_rng_state(),
        "numpy_rng": json.dumps(np.random.get_state(legacy=False), default=lambda o: o.tolist()),  # noqa: NPY002
        "python_rng": json.dumps(random.getstate()),
    }
    if torch.cuda.is_available():
        state["cuda_rng"] = torch.cuda.get_rng_state_all()
    return state


def _restore_rng(state: dict[str, Any]) -> None:
    if "torch_rng" in state:
        torch.set_rng_state(state["torch_rng"])
    if "numpy_rng" in state:
        np_state = json.loads(state["numpy_rng"])
        np.random.set_state(np_state)  # noqa: NPY002 (the global state is what we restore)
    if "python_rng" in state:
        version, internal, gauss = json.loads(state["python_rng"])
        random.setstate((version, tuple(internal), gauss))
    if "cuda_rng" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])


def _save_state(path: Path, state: dict[str, Any]) -> None:
    with atomic_output(path) as tmp:
        torch.save(state, tmp)


def _load_state(path: Path) -> dict[str, Any]:
    try:
        state: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated or foreign file: tell the user which
        raise UserError(f"{path}: cannot resume from this training state ({exc})") from exc
    return state


def _write_history(path: Path, history: list[dict[str, Any]]) -> None:
    write_atomic(path, "".join(json.dumps(row, sort_keys=True) + "\n" for row in history))


def fit(
    config: TrainConfig,
    train_set: ChipSet,
    val_set: ChipSet | None,
    run_dir: str | Path,
    *,
    resume: bool = False,
    device: torch.device | None = None,
    stop_after_epochs: int | None = None,
) -> FitResult:
    """Train one model on ``train_set``, selecting on ``val_set`` (F1 at 0.70).

    Args:
        config: The run's settings.
        train_set: Training chips (normalised).
        val_set: Validation chips: checkpoint selection and early stopping only. None trains
            all ``config.epochs`` epochs and keeps the last weights.
        run_dir: Directory for ``state.pt``, ``best.safetensors`` and ``metrics.jsonl``.
        resume: Continue from ``run_dir/state.pt`` if present (its settings must match).
        device: Where to train; default CUDA if available, else CPU.
        stop_after_epochs: Stop (as if killed) after this many epochs of this call; for tests.

    Returns:
        The best model (eval mode, LoRA merged) and the training history.

    Raises:
        UserError: If ``run_dir`` holds a state of a different run, or a state exists without
            ``resume``.
    """
    device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    configure_determinism(device)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    state_path = run_dir / STATE_FILE
    if len(train_set) == 0 or (val_set is not None and len(val_set) == 0):
        raise UserError("training needs at least one train chip and one validation chip")

    torch.manual_seed(config.seed)
    model = build_model(config.model, config.model_config)
    stages.load_clay_weights(model, config.clay_checkpoint)
    two_stage = stages.has_clay(model)
    check_swa(config, two_stage, val_set is not None)
    loss_fn = SegmentationLoss(config.loss).to(device)

    state: dict[str, Any] | None = None
    if state_path.exists():
        if not resume:
            raise UserError(f"{run_dir} already holds a training run; pass --resume to continue it")
        state = _load_state(state_path)
        if state.get("fingerprint") != config.fingerprint():
            raise UserError(f"{run_dir} holds a run with different settings; use another --out")

    stage = 1
    if state is not None:
        stage = int(state["stage"])
    if stage == 2:
        stages.enter_stage2(model, config.lora)
    model.to(device)
    optimizer, scheduler = stages.build_optimizer(model, config, stage, two_stage)
    if config.swa_lr is not None:
        scheduler = swa_schedule(optimizer, config)
    swa_model: AveragedModel | None = None
    swa_from = config.epochs - config.swa_epochs if config.swa_epochs else config.epochs
    start_epoch, best_f1, best_epoch, best_stage, since_best = 0, -1.0, -1, 1, 0
    history: list[dict[str, Any]] = []
    finished = False
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start_epoch = int(state["epoch"]) + 1
        best_f1, best_epoch = float(state["best_f1"]), int(state["best_epoch"])
        best_stage, since_best = int(state["best_stage"]), int(state["since_best"])
        history = list(state["history"])
        finished = bool(state["finished"])
        if "swa" in state:
            swa_model = AveragedModel(model)
            swa_model.load_state_dict(state["swa"])
        _restore_rng(state)
        log.info("resuming %s at epoch %d (best F1 %.4f at epoch %d)", run_dir, start_epoch + 1, best_f1,
                 best_epoch + 1)

    use_amp = config.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and not torch.cuda.is_bf16_supported())
    epochs_this_call = 0
    epoch = start_epoch
    while not finished and epoch < config.epochs:
        if two_stage and stage == 1 and epoch >= config.stage1_epochs:
            stage = 2
            stages.enter_stage2(model, config.lora)
            model.to(device)
            optimizer, scheduler = stages.build_optimizer(model, config, stage, two_stage)
            since_best = 0  # the LoRA stage gets its full patience
        started = time.monotonic()
        torch.manual_seed(_epoch_seed(config.seed, epoch, 0))
        model.train()
        total_loss, n_batches = 0.0, 0
        steps = math.ceil(len(train_set) * max(config.repeats, 1) / config.batch_size)
        bar = tqdm(train_batches(config, train_set, epoch), total=steps,
                   desc=f"seed {config.seed} epoch {epoch + 1}/{config.epochs}",
                   disable=not config.progress, leave=False)
        for x_cpu, y_cpu in bar:
            x, y = x_cpu.to(device), y_cpu.to(device)
            optimizer.zero_grad(set_to_none=True)
            with _autocast(device, use_amp):
                logits = model(x)
            loss = loss_fn(logits.float(), y)
            if not torch.isfinite(loss):
                raise UserError(f"training diverged at epoch {epoch + 1}: loss is {loss.item()}")
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            total_loss += float(loss.detach())
            n_batches += 1
            bar.set_postfix(loss=f"{total_loss / n_batches:.4f}")
        epoch_lrs = [g["lr"] for g in optimizer.param_groups]
        scheduler.step()
        if epoch >= swa_from:
            if swa_model is None:
                swa_model = AveragedModel(model)
            swa_model.update_parameters(model)
        if val_set is not None:
            val = evaluate_counts(model, val_set, (SELECTION_THRESHOLD,), config.batch_size, device, use_amp)
            scores = val.at(SELECTION_THRESHOLD)
        else:  # fixed schedule: every epoch "improves", the last one is kept
            scores = Scores(SELECTION_THRESHOLD, 0, 0, 0, 0)
        improved = scores.f1 > best_f1 or val_set is None
        if improved:
            best_f1, best_epoch, best_stage, since_best = scores.f1, epoch, stage, 0
            tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
            with atomic_output(run_dir / BEST_FILE) as tmp:
                save_file(tensors, str(tmp))
        else:
            since_best += 1
        row = {
            "epoch": epoch + 1, "stage": stage, "train_loss": total_loss / max(n_batches, 1),
            "val_f1@0.70": scores.f1, "val_precision@0.70": scores.precision,
            "val_recall@0.70": scores.recall, "val_iou@0.70": scores.iou,
            "lr": epoch_lrs, "seconds": round(time.monotonic() - started, 3),
            "best": improved,
        }
        if swa_model is not None:
            row["swa_averaged"] = int(swa_model.n_averaged)
        history.append(row)
        tqdm.write(f"seed {config.seed} epoch {epoch + 1}: loss {row['train_loss']:.4f} "
                   f"val F1@0.70 {scores.f1:.4f}{' *' if improved else ''}") if config.progress else None
        stopped_early = since_best >= config.patience and (stage == 2 or not two_stage)
        finished = stopped_early or epoch + 1 >= config.epochs
        _save_state(state_path, {
            "fingerprint": config.fingerprint(), "model": model.state_dict(),
            "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
            "epoch": epoch, "stage": stage, "best_f1": best_f1, "best_epoch": best_epoch,
            "best_stage": best_stage, "since_best": since_best, "history": history,
            "finished": finished, **_rng_state(),
            **({"swa": swa_model.state_dict()} if swa_model is not None else {}),
        })
        _write_history(run_dir / HISTORY_FILE, history)
        epoch += 1
        epochs_this_call += 1
        if stop_after_epochs is not None and epochs_this_call >= stop_after_epochs and not finished:
            raise KeyboardInterrupt(f"stopped after {epochs_this_call} epochs (stop_after_epochs)")

    if swa_model is not None:
        _save_averaged(swa_model, config, train_set, device, use_amp, run_dir / BEST_FILE)
    best = build_model(config.model, config.model_config)
    if best_stage == 2:
        stages.enter_stage2(best, config.lora)
    best.load_state_dict(load_file(str(run_dir / BEST_FILE)))
    best = stages.merge(best).to(device).eval()
    return FitResult(best, best_epoch + 1, best_f1, len(history), history)



def _save_averaged(
    swa_model: AveragedModel, config: TrainConfig, train_set: ChipSet, device: torch.device, amp: bool,
    path: Path,
) -> None:
    """Recompute the BatchNorm statistics of the averaged weights and save them to ``path``.

    One pass of :func:`train_batches` of the virtual epoch ``config.epochs`` (augmented like the
    training epochs), dropout drawn from the global RNG seeded the same way: a resumed run
    writes the same network.
    """
    network = swa_model.module
    torch.manual_seed(_epoch_seed(config.seed, config.epochs, 0))
    with _autocast(device, amp):
        update_bn((x for x, _ in train_batches(config, train_set, config.epochs)), network, device)
    tensors = {k: v.detach().cpu().contiguous() for k, v in network.state_dict().items()}
    with atomic_output(path) as tmp:
        save_file(tensors, str(tmp))
