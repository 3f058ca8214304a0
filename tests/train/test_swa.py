"""Weight averaging within one run (SWA): the mean of the last epochs' weights, BatchNorm
statistics recomputed for it, resume, schedule, settings recorded (tiny U-Net, 3 epochs)."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file
from torch.optim.swa_utils import update_bn

from pipeline.bands import SWEEP_BANDS
from pipeline.errors import UserError
from pipeline.models.checkpoint import IDENTITY, load_checkpoint
from pipeline.models.registry import build_model
from pipeline.train import ship
from pipeline.train.config import TrainConfig
from pipeline.train.cv import Recipe
from pipeline.train.experiment import prepare_data
from pipeline.train.loop import BEST_FILE, STATE_FILE, _epoch_seed, check_swa, fit, train_batches

from .conftest import SAMPLE, TINY_UNET, build_official

#: Averages epochs 2 and 3 of 3; crops, jitter and the L2A shift on, as in the shipped recipe.
SWA = TrainConfig(
    "unet", TINY_UNET, seed=5, epochs=3, lr=3e-3, crop=64, intensity_jitter=0.1, radiometric=1.0,
    swa_epochs=2, progress=False,
)  # fmt: skip
PLAIN = replace(SWA, swa_epochs=0)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Any:
    root = build_official(tmp_path_factory.mktemp("l4s") / "official")
    return prepare_data(root, SWEEP_BANDS)


@pytest.fixture(scope="module")
def runs(data: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A SWA run, and the same run without SWA stopped after every epoch (its per-epoch weights)."""
    tmp = tmp_path_factory.mktemp("swa")
    swa = fit(SWA, data.train, None, tmp / "swa")
    per_epoch = []
    for _ in range(PLAIN.epochs):
        try:
            fit(PLAIN, data.train, None, tmp / "plain", resume=True, stop_after_epochs=1)
        except KeyboardInterrupt:
            pass
        per_epoch.append(torch.load(tmp / "plain" / STATE_FILE, weights_only=True)["model"])
    return {"swa": swa, "dir": tmp / "swa", "per_epoch": per_epoch,
            "state": torch.load(tmp / "swa" / STATE_FILE, weights_only=True)}  # fmt: skip


def _parameter_names() -> list[str]:
    return [name for name, _ in build_model("unet", TINY_UNET).named_parameters()]


def _bn_buffers(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in tensors.items() if k.endswith(("running_mean", "running_var"))}


def test_the_result_is_the_mean_of_the_last_epochs_weights(runs: dict[str, Any]) -> None:
    final = load_file(str(runs["dir"] / BEST_FILE))
    last_two = runs["per_epoch"][1:]
    for name in _parameter_names():
        mean = torch.stack([weights[name] for weights in last_two]).mean(0)
        torch.testing.assert_close(final[name], mean, rtol=0, atol=1e-6)
        # not simply the last epoch's weights
    assert any(not torch.equal(final[n], runs["per_epoch"][-1][n]) for n in _parameter_names())
    # averaging does not touch the trajectory: the SGD iterate is the plain run's, bit for bit
    for name, value in runs["per_epoch"][-1].items():
        assert torch.equal(runs["state"]["model"][name], value), name
    assert [row.get("swa_averaged") for row in runs["swa"].history] == [None, 1, 2]
    returned = runs["swa"].model.state_dict()
    for name, value in final.items():
        assert torch.equal(returned[name], value), name


def test_batchnorm_statistics_are_recomputed_for_the_mean(data: Any, runs: dict[str, Any]) -> None:
    final = load_file(str(runs["dir"] / BEST_FILE))
    last = _bn_buffers(runs["per_epoch"][-1])
    assert last and max(float((final[k] - v).abs().max()) for k, v in last.items()) > 1e-3
    # what update_bn gives for the mean weights over the loop's augmented batches of epoch `epochs`
    reference = build_model("unet", TINY_UNET)
    reference.load_state_dict(runs["per_epoch"][-1])
    with torch.no_grad():
        for name, param in reference.named_parameters():
            param.copy_(torch.stack([w[name] for w in runs["per_epoch"][1:]]).mean(0))
    torch.manual_seed(_epoch_seed(SWA.seed, SWA.epochs, 0))
    update_bn([x for x, _ in train_batches(SWA, data.train, SWA.epochs)], reference)
    expected = reference.state_dict()
    for name, value in _bn_buffers(final).items():
        torch.testing.assert_close(value, expected[name], rtol=1e-5, atol=1e-5)
    batches = len(list(train_batches(SWA, data.train, SWA.epochs)))
    tracked = [v for k, v in final.items() if k.endswith("num_batches_tracked")]
    assert tracked and all(int(v) == batches for v in tracked)


def test_resume_inside_the_window_gives_the_same_network(data: Any, tmp_path: Path) -> None:
    config = replace(SWA, swa_lr=1e-3)  # the constant-lr schedule, whose scheduler state resumes too
    full = fit(config, data.train, None, tmp_path / "full")
    assert [row["lr"] for row in full.history] == [[3e-3], [1e-3], [1e-3]]
    with pytest.raises(KeyboardInterrupt):  # killed after epoch 2: one epoch averaged
        fit(config, data.train, None, tmp_path / "killed", stop_after_epochs=2)
    state = torch.load(tmp_path / "killed" / STATE_FILE, weights_only=True)
    assert state["epoch"] == 1 and int(state["swa"]["n_averaged"]) == 1
    torch.manual_seed(123)  # another process draws differently before resuming
    resumed = fit(config, data.train, None, tmp_path / "killed", resume=True)
    assert [r["train_loss"] for r in resumed.history] == [r["train_loss"] for r in full.history]
    a, b = load_file(str(tmp_path / "full" / BEST_FILE)), load_file(str(tmp_path / "killed" / BEST_FILE))
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6)
    # a finished run resumed again rewrites the same averaged network
    again = fit(config, data.train, None, tmp_path / "killed", resume=True)
    for key, value in again.model.state_dict().items():
        torch.testing.assert_close(value, a[key], rtol=0, atol=1e-6)


def test_settings_swa_cannot_honour_are_user_errors(data: Any, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="validation set"):
        fit(SWA, data.train, data.validation, tmp_path / "val")
    with pytest.raises(UserError, match="between 0 and epochs"):
        check_swa(replace(SWA, swa_epochs=4), two_stage=False, has_validation=False)
    with pytest.raises(UserError, match="swa_lr"):
        check_swa(replace(PLAIN, swa_lr=1e-4), two_stage=False, has_validation=False)
    with pytest.raises(UserError, match="one-stage"):
        check_swa(SWA, two_stage=True, has_validation=False)
    check_swa(SWA, two_stage=False, has_validation=False)


def test_fingerprint_names_swa_only_when_it_is_on() -> None:
    assert "swa" not in PLAIN.fingerprint()  # runs without SWA resume as before the option
    recorded = json.loads(SWA.fingerprint())
    assert recorded["swa_epochs"] == 2 and recorded["swa_lr"] is None
    config = Recipe(swa_epochs=5, swa_lr=3e-4).train_config()
    assert (config.swa_epochs, config.swa_lr) == (5, 3e-4)
    assert Recipe().train_config().swa_epochs == 0


def test_ship_takes_the_option_and_records_it_in_the_checkpoint(tmp_path: Path) -> None:
    args = ship._parser().parse_args(["--swa-epochs", "5", "--swa-lr", "3e-4"])
    assert (ship.recipe_from_args(args).swa_epochs, ship.recipe_from_args(args).swa_lr) == (5, 3e-4)
    smoke = ship.recipe_from_args(ship._parser().parse_args(["--swa-epochs", "5", "--smoke"]))
    assert (smoke.epochs, smoke.swa_epochs) == (1, 1)
    pool = tmp_path / "pool"
    for sub, name in (("img", "image"), ("mask", "mask")):
        (pool / sub).mkdir(parents=True)
        for i in (16, 28, 512):
            shutil.copy(SAMPLE / sub / f"{name}_{i}.h5", pool / sub / f"{name}_{i}.h5")
    recipe = Recipe(widths=(4, 8, 16, 32), epochs=2, repeats=1, swa_epochs=2)
    keys = ("folds", "threshold", "chosen_method", "criterion", "raw", "nested", "methods", "tta",
            "ensemble", "cross_fitted", "in_sample", "l2a_shifted", "rule")  # fmt: skip
    report = {"command": "test", "cv": dict.fromkeys(keys)}
    dest = tmp_path / "swa.safetensors"
    ship.train_final(recipe, pool, tmp_path / "final", dest, IDENTITY, 0.5, report)
    _, meta = load_checkpoint(dest)
    assert meta.training["recipe"]["swa_epochs"] == 2 and meta.training["recipe"]["swa_lr"] is None
    assert meta.training["train_config"]["swa_epochs"] == 2
    assert [row["swa_averaged"] for row in meta.training["history"]] == [1, 2]
