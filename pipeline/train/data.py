"""Landslide4Sense chips on disk: layout detection, validated reading, normalisation, augmentation.

Three directory layouts are recognised (:func:`detect_layout`):

* ``official`` -- the Zenodo release: ``TrainData/img/image_N.h5`` + ``TrainData/mask/mask_N.h5``,
  likewise ``ValidData`` and ``TestData`` (test masks only where the release includes them).
* ``mirror`` -- the HuggingFace mirrors that include test masks:
  ``images/{train,validation,test}/image_N.h5`` + ``annotations/{split}/mask_N.h5``.
* ``flat`` -- one pool ``img/image_N.h5`` + ``mask/mask_N.h5`` (e.g. the 15-chip sample in
  ``shared/data/l4s-sample`` beside the checkout), split deterministically by :func:`split_pool`.

Every chip is checked when read: key ``img`` of shape (128, 128, 14) and key ``mask`` of shape
(128, 128); a missing, corrupt or truncated file raises :class:`~pipeline.errors.UserError`
naming the file.

The model input is ``x[c] = (l4s[bands[c]] - mean[c]) / std[c]`` with ``l4s`` the values as stored
(already the L4S scaling) and non-finite values replaced by the band's train mean before
z-scoring (so they become 0). Statistics come from the train split only (:func:`band_statistics`).
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import torch

from pipeline.bands import L4S_BANDS, band_indices
from pipeline.errors import UserError

log = logging.getLogger(__name__)

CHIP_SIZE = 128
IMAGE_SHAPE = (CHIP_SIZE, CHIP_SIZE, len(L4S_BANDS))
MASK_SHAPE = (CHIP_SIZE, CHIP_SIZE)
SPLITS = ("train", "validation", "test")

#: Directory names per layout: split -> (image dir, mask dir), relative to the data root.
_OFFICIAL_DIRS = {
    "train": ("TrainData/img", "TrainData/mask"),
    "validation": ("ValidData/img", "ValidData/mask"),
    "test": ("TestData/img", "TestData/mask"),
}
_MIRROR_DIRS = {s: (f"images/{s}", f"annotations/{s}") for s in SPLITS}
_FLAT_DIRS = ("img", "mask")
_IMAGE_RE = re.compile(r"^image_(\d+)\.h5$")

#: Default fractions (train, validation, test) and seed for splitting a flat pool.
FLAT_FRACTIONS = (0.6, 0.2, 0.2)
FLAT_SPLIT_SEED = 0


@dataclass(frozen=True)
class Chip:
    """One chip: its id within its split and the paths of its image and mask files."""

    chip_id: int
    image: Path
    mask: Path | None


@dataclass(frozen=True)
class DataLayout:
    """A dataset found on disk.

    Attributes:
        kind: ``official``, ``mirror`` or ``flat``.
        root: The data directory.
        splits: Split name -> chips sorted by id. Splits without files are absent.
    """

    kind: str
    root: Path
    splits: dict[str, tuple[Chip, ...]]

    def chips(self, split: str) -> tuple[Chip, ...]:
        """The chips of ``split``.

        Raises:
            UserError: If the split is absent from this dataset.
        """
        if split not in self.splits or not self.splits[split]:
            raise UserError(
                f"{self.root}: the {self.kind} layout has no '{split}' split "
                f"(found: {', '.join(sorted(self.splits)) or 'none'})"
            )
        return self.splits[split]

    def split_ids(self) -> dict[str, list[int]]:
        """Chip ids per split (recorded in checkpoints so an evaluation can use the same split)."""
        return {name: [c.chip_id for c in chips] for name, chips in self.splits.items()}


def _scan(image_dir: Path, mask_dir: Path) -> tuple[Chip, ...]:
    chips = []
    for path in image_dir.iterdir():
        match = _IMAGE_RE.match(path.name)
        if match is None:
            continue
        chip_id = int(match.group(1))
        mask = mask_dir / f"mask_{chip_id}.h5"
        chips.append(Chip(chip_id, path, mask if mask.is_file() else None))
    return tuple(sorted(chips, key=lambda c: c.chip_id))


def split_pool(
    ids: Sequence[int], fractions: tuple[float, float, float] = FLAT_FRACTIONS, seed: int = FLAT_SPLIT_SEED
) -> dict[str, list[int]]:
    """Split a pool of chip ids deterministically into train/validation/test.

    The ids are sorted, permuted by ``numpy.random.default_rng(seed)`` and cut at the cumulative
    fractions (rounded; validation and test get at least one chip when the pool has three or more).
    The result depends only on the ids, never on the chips' contents.

    Returns:
        ``{"train": [...], "validation": [...], "test": [...]}``, each sorted.
    """
    ordered = sorted(ids)
    n = len(ordered)
    perm = np.random.default_rng(seed).permutation(n)
    n_val = max(1, round(fractions[1] * n)) if n >= 3 else 0
    n_test = max(1, round(fractions[2] * n)) if n >= 3 else 0
    n_train = n - n_val - n_test
    picked = [ordered[i] for i in perm]
    return {
        "train": sorted(picked[:n_train]),
        "validation": sorted(picked[n_train : n_train + n_val]),
        "test": sorted(picked[n_train + n_val :]),
    }


def detect_layout(root: str | Path, flat_split: dict[str, list[int]] | None = None) -> DataLayout:
    """Find which L4S layout ``root`` holds and list its chips.

    Args:
        root: Data directory.
        flat_split: For the flat layout only, explicit chip ids per split (e.g. those recorded in
            a checkpoint); default :func:`split_pool` of all ids.

    Raises:
        UserError: If ``root`` is missing or holds none of the known layouts.
    """
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"data directory {root} does not exist (get it with `landslide data download`)")
    for kind, dirs in (("official", _OFFICIAL_DIRS), ("mirror", _MIRROR_DIRS)):
        splits = {
            split: _scan(root / img, root / msk)
            for split, (img, msk) in dirs.items()
            if (root / img).is_dir()
        }
        splits = {k: v for k, v in splits.items() if v}
        if splits:
            layout = DataLayout(kind, root, splits)
            log.info("%s: %s layout, %s", root, kind, {k: len(v) for k, v in splits.items()})
            return layout
    if (root / _FLAT_DIRS[0]).is_dir():
        pool = {c.chip_id: c for c in _scan(root / _FLAT_DIRS[0], root / _FLAT_DIRS[1])}
        if pool:
            assignment = flat_split or split_pool(list(pool))
            unknown = sorted(i for ids in assignment.values() for i in ids if i not in pool)
            if unknown:
                raise UserError(f"{root}: chip ids {unknown[:10]} of the requested split are not in the pool")
            splits = {name: tuple(pool[i] for i in ids) for name, ids in assignment.items() if ids}
            log.info("%s: flat layout (one pool), split %s", root, {k: len(v) for k, v in splits.items()})
            return DataLayout("flat", root, splits)
    raise UserError(
        f"{root} holds no Landslide4Sense data: expected TrainData/img + TrainData/mask (official), "
        "images/<split> + annotations/<split> (HuggingFace mirror) or img/ + mask/ (flat pool)"
    )


def read_h5(path: Path, key: str, shape: tuple[int, ...]) -> np.ndarray:
    """Read and check one array of an L4S file.

    Raises:
        UserError: Naming ``path`` if it cannot be opened, lacks ``key`` or has the wrong shape.
    """
    try:
        with h5py.File(path, "r") as fh:
            if key not in fh:
                raise UserError(f"{path}: no '{key}' dataset (found keys {sorted(fh.keys())})")
            data = fh[key]
            if tuple(data.shape) != shape:
                raise UserError(f"{path}: '{key}' has shape {tuple(data.shape)}, expected {shape}")
            return np.asarray(data[()])
    except UserError:
        raise
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise UserError(f"{path}: not a readable Landslide4Sense HDF5 file ({exc})") from exc


def read_image(chip: Chip, terrain: str = "l4s") -> np.ndarray:
    """The chip's 14 channels, float64 HWC (L4S scaling).

    Args:
        chip: The chip.
        terrain: ``l4s`` keeps the stored slope channel; ``sweep`` recomputes it from the DEM
            channel with the sweep's operator (:mod:`pipeline.train.domain`).
    """
    st = chip.image.stat() if chip.image.exists() else None
    key = (st.st_mtime_ns, st.st_size) if st is not None else (0, 0)
    return _cached_image(chip.image, terrain, key).copy()


@functools.lru_cache(maxsize=64)
def _cached_image(path: Path, terrain: str, version: tuple[int, int]) -> np.ndarray:
    """Chips are read many times by a cross-validation (statistics, folds, rule): read each once.

    ``version`` (modification time, size) keys the cache, so a rewritten file is read again.
    """
    from pipeline.train.domain import apply_terrain

    return apply_terrain(read_h5(path, "img", IMAGE_SHAPE).astype(np.float64, copy=False), terrain)


def read_mask(chip: Chip) -> np.ndarray:
    """The chip's mask as uint8 {0, 1}.

    Raises:
        UserError: If the mask file is missing or holds values other than 0 and 1.
    """
    if chip.mask is None:
        raise UserError(f"{chip.image}: no matching mask file (mask_{chip.chip_id}.h5)")
    mask = read_h5(chip.mask, "mask", MASK_SHAPE)
    if not np.isin(mask, (0, 1)).all():
        raise UserError(f"{chip.mask}: mask values {np.unique(mask)[:5].tolist()} are not in {{0, 1}}")
    return mask.astype(np.uint8)


@dataclass(frozen=True)
class BandStatistics:
    """Per-channel mean and standard deviation of the train split (finite values only)."""

    bands: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]


def band_statistics(chips: Sequence[Chip], bands: Sequence[str], terrain: str = "l4s") -> BandStatistics:
    """Mean and std per band over all finite pixels of ``chips`` (call with the train split only).

    Raises:
        UserError: If a band has no finite value at all.
    """
    idx = band_indices(L4S_BANDS, bands)
    total = np.zeros(len(idx))
    total_sq = np.zeros(len(idx))
    count = np.zeros(len(idx))
    for chip in chips:
        image = read_image(chip, terrain)[..., idx].reshape(-1, len(idx))
        finite = np.isfinite(image)
        values = np.where(finite, image, 0.0)
        total += values.sum(0)
        total_sq += (values**2).sum(0)
        count += finite.sum(0)
    if (count == 0).any():
        empty = [b for b, n in zip(bands, count, strict=True) if n == 0]
        raise UserError(f"bands {empty} have no finite value in the train split")
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean**2, 0.0))
    std = np.where(std > 1e-12, std, 1.0)
    return BandStatistics(tuple(bands), tuple(float(v) for v in mean), tuple(float(v) for v in std))


def normalise(image_hwc: np.ndarray, bands: Sequence[str], stats: BandStatistics) -> np.ndarray:
    """Select ``bands`` by name and z-score them: float32 CHW, non-finite -> 0 (the train mean)."""
    idx = band_indices(L4S_BANDS, bands)
    stat_idx = band_indices(stats.bands, bands)
    mean = np.asarray(stats.mean)[stat_idx]
    std = np.asarray(stats.std)[stat_idx]
    selected = image_hwc[..., idx]
    selected = np.where(np.isfinite(selected), selected, mean)
    return ((selected - mean) / std).transpose(2, 0, 1).astype(np.float32)


class ChipSet(torch.utils.data.Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """The normalised chips of one split, held in memory (float32, about 0.85 MB per chip).

    Items are ``(x [C, 128, 128] float32, y [1, 128, 128] float32)``. ``terrain`` is passed to
    :func:`read_image`.
    """

    def __init__(
        self, chips: Sequence[Chip], bands: Sequence[str], stats: BandStatistics, terrain: str = "l4s"
    ) -> None:
        self.chips = tuple(chips)
        self.bands = tuple(bands)
        self.stats = stats
        self.terrain = terrain
        self.images = torch.from_numpy(
            np.stack([normalise(read_image(c, terrain), bands, stats) for c in self.chips])
            if self.chips
            else np.zeros((0, len(bands), CHIP_SIZE, CHIP_SIZE), np.float32)
        )
        self.masks = torch.from_numpy(
            np.stack([read_mask(c) for c in self.chips])[:, None].astype(np.float32)
            if self.chips
            else np.zeros((0, 1, CHIP_SIZE, CHIP_SIZE), np.float32)
        )

    def __len__(self) -> int:
        return len(self.chips)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[index], self.masks[index]


def augment(
    x: torch.Tensor, y: torch.Tensor, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random horizontal flip, vertical flip and 90-degree rotation, the same for image and mask.

    Args:
        x: Batch ``[B, C, H, W]``.
        y: Masks ``[B, 1, H, W]``.
        generator: Seeded generator: the same seed gives the same augmentation.

    Returns:
        Augmented copies ``(x, y)``.
    """
    draws = torch.randint(0, 2, (x.shape[0], 2), generator=generator)
    turns = torch.randint(0, 4, (x.shape[0],), generator=generator)
    xs, ys = [], []
    for i in range(x.shape[0]):
        xi, yi = x[i], y[i]
        if draws[i, 0]:
            xi, yi = xi.flip(-1), yi.flip(-1)
        if draws[i, 1]:
            xi, yi = xi.flip(-2), yi.flip(-2)
        k = int(turns[i])
        if k:
            xi, yi = torch.rot90(xi, k, (-2, -1)), torch.rot90(yi, k, (-2, -1))
        xs.append(xi)
        ys.append(yi)
    return torch.stack(xs), torch.stack(ys)


def shared_sample_dir() -> Path:
    """Where the real Landslide4Sense sample chips are.

    ``$LANDSLIDE_L4S_SAMPLE`` if set, else the first ``shared/data/l4s-sample`` found above the
    working directory or the package's checkout.
    """
    import os

    env = os.environ.get("LANDSLIDE_L4S_SAMPLE")
    if env:
        return Path(env)
    for base in (Path.cwd(), Path(__file__).resolve()):
        for parent in (base, *base.parents):
            candidate = parent / "shared" / "data" / "l4s-sample"
            if candidate.is_dir():
                return candidate
    return Path("shared/data/l4s-sample")
