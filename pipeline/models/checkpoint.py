"""The project's checkpoint format: one safetensors file, metadata as JSON in its header.

A checkpoint is a single ``.safetensors`` file. Its tensors are the model's ``state_dict``; its
header metadata holds one key, ``landslide``, whose value is the JSON of :class:`CheckpointMeta`:
model name and configuration, input bands and their order, normalisation statistics, decision
threshold, a summary of the training data and the software version. Loading never unpickles
anything, so a checkpoint file cannot run code.

The model's input contract, which the sweep and training share::

    x[c] = (l4s_scaled[bands[c]] - norm_mean[c]) / norm_std[c]   (non-finite -> 0, the mean)

where ``l4s_scaled`` is the Landslide4Sense scaling of :mod:`pipeline.bands`. The model's output
is a logit ``z``; the probability every consumer (sweep, evaluation, notebooks) reports is
the checkpoint's :class:`Calibration` applied to it (:func:`calibrated_probabilities`): a scaling
``sigmoid(scale * z + bias)``, beta calibration or an isotonic table.
A checkpoint without calibration (written before it existed) loads with the identity
(``scale=1, bias=0``) and a warning.

The header also records the SHA-256 of the tensor data (every byte after the header), under
``tensor_sha256``: :func:`save_checkpoint` writes it and :func:`verify_tensor_digest` checks it
before a sweep starts and whenever the weights are loaded, so flipped or overwritten weight bytes
are refused with one line instead of giving a silently wrong map. A checkpoint written before the
digest existed loads with a warning; :func:`stamp_tensor_digest` adds the digest to such a file
without touching its tensor bytes.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import math
import os
import struct
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from pipeline import __version__
from pipeline.errors import UserError
from pipeline.store.atomic import atomic_output

FORMAT = "landslide-checkpoint/1"
_META_KEY = "landslide"
#: Header metadata key of the SHA-256 of the tensor data (the bytes after the header).
DIGEST_KEY = "tensor_sha256"
CALIBRATION_METHODS = ("identity", "temperature", "platt", "beta", "isotonic")
#: Isotonic probabilities are kept within this distance of 0 and 1 (finite logits, prior shifts).
PROBABILITY_EPS = 1e-6

log = logging.getLogger(__name__)


class CheckpointError(UserError, ValueError):
    """A checkpoint file that cannot be used: missing, corrupt, unsafe or of the wrong layout.

    A :class:`~pipeline.errors.UserError` (so ``landslide`` reports it as one line) and a
    ``ValueError`` (as before).
    """


@dataclass(frozen=True)
class Calibration:
    """Map from the model's logit ``z`` to a calibrated probability.

    * ``identity``, ``temperature``, ``platt``: ``sigmoid(scale * z + bias)`` (temperature:
      ``scale = 1/T``, ``bias = 0``).
    * ``beta`` (Kull et al. 2017), on ``p = sigmoid(z)``: ``sigmoid(a ln p - b ln(1 - p) + c)``
      with ``params = (a, b, c)``, ``a, b >= 0`` (so the map is monotone).
    * ``isotonic``: the non-decreasing step map fitted by pool-adjacent-violators, stored as
      ``knots`` (logits, ascending) and ``values`` (probabilities at the knots), linear between
      knots and constant beyond them; values are kept within :data:`PROBABILITY_EPS` of 0 and 1.

    A different base rate (label shift, Saerens et al. 2002): when the calibration was fitted
    where ``base_rate`` of the pixels were landslides, the probability for a region whose rate is
    ``r`` is the calibrated one with its logit moved by ``logit(r) - logit(base_rate)``
    (:meth:`prior_shift`).

    Attributes:
        method: One of :data:`CALIBRATION_METHODS`.
        scale: Multiplier of the logit (scaling methods).
        bias: Added to the scaled logit (scaling methods).
        fitted_on: Where it was fitted (e.g. out-of-fold predictions of a cross-validation).
        params: ``(a, b, c)`` of ``beta``.
        knots: Logit knots of ``isotonic``.
        values: Probabilities at the knots of ``isotonic``.
        base_rate: Landslide fraction of the pixels it was fitted on (None: not recorded).
    """

    method: str = "identity"
    scale: float = 1.0
    bias: float = 0.0
    fitted_on: str = ""
    params: tuple[float, ...] = ()
    knots: tuple[float, ...] = ()
    values: tuple[float, ...] = ()
    base_rate: float | None = None

    def __post_init__(self) -> None:
        if self.method not in CALIBRATION_METHODS:
            raise CheckpointError(
                f"unknown calibration method {self.method!r} (one of {CALIBRATION_METHODS})"
            )
        if not (self.scale > 0.0 and abs(self.bias) < 1e6):
            raise CheckpointError(f"calibration scale {self.scale} must be > 0 and bias {self.bias} finite")
        for name in ("params", "knots", "values"):
            object.__setattr__(self, name, tuple(float(v) for v in getattr(self, name)))
        if self.method == "beta" and (len(self.params) != 3 or min(self.params[:2]) < 0):
            raise CheckpointError(f"beta calibration needs (a, b, c) with a, b >= 0, not {self.params}")
        if self.method == "isotonic":
            z, p = self.knots, self.values
            ordered = all(b >= a for a, b in itertools.pairwise(z)) and all(
                b >= a for a, b in itertools.pairwise(p)
            )
            if not z or len(z) != len(p) or not ordered or not all(0.0 <= v <= 1.0 for v in p):
                raise CheckpointError("isotonic calibration needs ascending knots, rising values in [0, 1]")
        if self.base_rate is not None and not 0.0 < self.base_rate < 1.0:
            raise CheckpointError(f"calibration base rate {self.base_rate} is not in (0, 1)")

    def logits(self, logits: torch.Tensor) -> torch.Tensor:
        """Calibrated logits (float32)."""
        z = logits.float()
        if self.method == "beta":
            a, b, c = self.params
            softplus = torch.nn.functional.softplus
            return -a * softplus(-z) + b * softplus(z) + c
        if self.method == "isotonic":
            p = _interp(z, self.knots, self.values).clamp(PROBABILITY_EPS, 1.0 - PROBABILITY_EPS)
            return torch.log(p) - torch.log1p(-p)
        return z * self.scale + self.bias

    def prior_shift(self, base_rate: float | None) -> float:
        """Logit offset that moves this calibration to a region whose landslide fraction is ``base_rate``.

        ``logit(base_rate) - logit(self.base_rate)``; 0 when ``base_rate`` is None.

        Raises:
            CheckpointError: If ``base_rate`` is not in (0, 1), or the calibration records no
                base rate of its own.
        """
        if base_rate is None:
            return 0.0
        if not 0.0 < base_rate < 1.0:
            raise CheckpointError(f"base rate {base_rate} is not in (0, 1)")
        if self.base_rate is None:
            raise CheckpointError("the checkpoint's calibration records no training base rate to correct")
        return math.log(base_rate / (1.0 - base_rate)) - math.log(self.base_rate / (1.0 - self.base_rate))

    def probabilities(self, logits: torch.Tensor, base_rate: float | None = None) -> torch.Tensor:
        """Calibrated probabilities, corrected to ``base_rate`` when given (see :meth:`prior_shift`)."""
        return torch.sigmoid(self.logits(logits) + self.prior_shift(base_rate))


def _interp(z: torch.Tensor, knots: tuple[float, ...], values: tuple[float, ...]) -> torch.Tensor:
    """Piecewise-linear interpolation of ``values`` at ``knots``, constant beyond the ends."""
    xk = torch.tensor(knots, dtype=torch.float64)
    yk = torch.tensor(values, dtype=torch.float64)
    x = z.double().clamp(xk[0], xk[-1])
    if len(knots) == 1:
        return torch.full_like(z, values[0])
    i = torch.searchsorted(xk, x, right=True).clamp(1, len(knots) - 1)
    x0, x1, y0, y1 = xk[i - 1], xk[i], yk[i - 1], yk[i]
    w = torch.where(x1 > x0, (x - x0) / (x1 - x0).clamp_min(1e-12), torch.zeros_like(x))
    return (y0 + w * (y1 - y0)).float()


def shift_probability(prob: np.ndarray, shift: float) -> np.ndarray:
    """Move probabilities by ``shift`` in logit space (a prior shift); NaN stays NaN, float32."""
    p = np.clip(np.asarray(prob, dtype=np.float64), PROBABILITY_EPS, 1.0 - PROBABILITY_EPS)
    out = 1.0 / (1.0 + np.exp(-(np.log(p) - np.log1p(-p) + shift)))
    return out.astype(np.float32)


IDENTITY = Calibration()


@dataclass(frozen=True)
class CheckpointMeta:
    """What a sweep and an evaluation need to know about a trained model.

    Attributes:
        model: Registry name (``unet``, ``clay``, ``hybrid``).
        config: Keyword arguments for the registry's constructor.
        bands: Input channels, in order (names from :mod:`pipeline.bands`).
        norm_mean: Per-channel mean of the L4S-scaled training data.
        norm_std: Per-channel standard deviation of the L4S-scaled training data.
        threshold: Decision threshold on the *calibrated* probability.
        calibration: Logit-to-probability map; None for checkpoints written before calibration
            existed (treated as the identity, with a warning at load).
        training: Summary of the training run (data, split, epochs, metrics).
        software_version: Version of ``pipeline`` that wrote the file.
        format: Format tag.

    """

    model: str
    config: dict[str, Any]
    bands: tuple[str, ...]
    norm_mean: tuple[float, ...]
    norm_std: tuple[float, ...]
    threshold: float = 0.5
    calibration: Calibration | None = None
    training: dict[str, Any] = field(default_factory=dict)
    software_version: str = __version__
    format: str = FORMAT

    def __post_init__(self) -> None:
        n = len(self.bands)
        if len(self.norm_mean) != n or len(self.norm_std) != n:
            raise CheckpointError(
                f"checkpoint metadata has {n} bands but {len(self.norm_mean)} means "
                f"and {len(self.norm_std)} standard deviations"
            )
        if not 0.0 < self.threshold < 1.0:
            raise CheckpointError(f"checkpoint threshold {self.threshold} is not in (0, 1)")

    def to_json(self) -> str:
        """Serialise to JSON (tuples become lists)."""
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> CheckpointMeta:
        """Parse metadata written by :meth:`to_json`.

        Raises:
            CheckpointError: If the JSON is malformed or fields are missing.

        """
        try:
            raw = json.loads(text)
            if raw.get("format") != FORMAT:
                raise CheckpointError(f"unknown checkpoint format {raw.get('format')!r}")
            raw["bands"] = tuple(raw["bands"])
            raw["norm_mean"] = tuple(float(v) for v in raw["norm_mean"])
            raw["norm_std"] = tuple(float(v) for v in raw["norm_std"])
            if raw.get("calibration") is not None:
                raw["calibration"] = Calibration(**raw["calibration"])  # older files: scaling fields only
            return cls(**raw)
        except CheckpointError:
            raise
        except (ValueError, KeyError, TypeError) as exc:
            raise CheckpointError(f"checkpoint metadata is malformed: {exc}") from exc

    @property
    def calibration_or_identity(self) -> Calibration:
        """The stored calibration, or the identity for an old checkpoint."""
        return self.calibration if self.calibration is not None else IDENTITY


def calibrated_probabilities(logits: torch.Tensor, meta: CheckpointMeta) -> torch.Tensor:
    """The probabilities a checkpoint reports for its model's ``logits``: its calibration applied."""
    return meta.calibration_or_identity.probabilities(logits)


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB pieces."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for piece in iter(lambda: fh.read(1 << 20), b""):
            digest.update(piece)
    return digest.hexdigest()


def save_checkpoint(path: str | Path, state_dict: dict[str, torch.Tensor], meta: CheckpointMeta) -> str:
    """Write ``state_dict`` and ``meta`` to one safetensors file, atomically, with the tensor digest.

    Returns:
        The file's SHA-256.

    """
    path = Path(path)
    tensors = {k: v.detach().contiguous().cpu() for k, v in state_dict.items()}
    with atomic_output(path) as tmp:
        save_file(tensors, str(tmp), metadata={_META_KEY: meta.to_json()})
        _add_digest(tmp)
    return sha256_file(path)


def _read_header(fh: Any, path: Path) -> tuple[dict[str, Any], int]:
    """The JSON header of an open safetensors file and the offset where its tensor data starts."""
    raw = fh.read(8)
    if len(raw) != 8:
        raise CheckpointError(f"checkpoint {path} is not a readable safetensors file: too short")
    (n,) = struct.unpack("<Q", raw)
    try:
        header = json.loads(fh.read(n))
    except (ValueError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"checkpoint {path} is not a readable safetensors file: bad header") from exc
    if not isinstance(header, dict):
        raise CheckpointError(f"checkpoint {path} is not a readable safetensors file: bad header")
    return header, 8 + n


def _data_digest(fh: Any, start: int) -> str:
    digest = hashlib.sha256()
    fh.seek(start)
    for piece in iter(lambda: fh.read(1 << 20), b""):
        digest.update(piece)
    return digest.hexdigest()


def _add_digest(path: Path) -> None:
    """Rewrite ``path``'s header with the digest of its tensor data (the data bytes are copied as is)."""
    tmp = path.with_name(path.name + ".digest")
    try:
        with open(path, "rb") as src:
            header, start = _read_header(src, path)
            meta = dict(header.get("__metadata__") or {})
            meta[DIGEST_KEY] = _data_digest(src, start)
            header["__metadata__"] = meta
            text = json.dumps(header, separators=(",", ":")).encode()
            text += b" " * (-len(text) % 8)  # the data stays 8-byte aligned, as safetensors writes it
            src.seek(start)
            with open(tmp, "wb") as dst:
                dst.write(struct.pack("<Q", len(text)) + text)
                for piece in iter(lambda: src.read(1 << 20), b""):
                    dst.write(piece)
                dst.flush()
                os.fsync(dst.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def stamp_tensor_digest(path: str | Path) -> str:
    """Add the tensor digest to an existing checkpoint's header, atomically; the tensor bytes stay.

    Returns:
        The tensor digest now recorded (the one already there if the file had one that matches).

    Raises:
        CheckpointError: The file is unreadable, or records a digest its data no longer matches.
    """
    path = Path(path)
    if verify_tensor_digest(path) is None:
        with atomic_output(path) as tmp:
            tmp.write_bytes(path.read_bytes())
            _add_digest(tmp)
    digest = verify_tensor_digest(path)
    assert digest is not None
    return digest


def verify_tensor_digest(path: str | Path) -> str | None:
    """Check the tensor data of a checkpoint against the digest in its header.

    Returns:
        The digest when the file records one and its data matches it; None for a checkpoint
        written before digests existed (a warning is logged).

    Raises:
        CheckpointError: The file is missing or unreadable, or its tensor data does not match the
            recorded digest (corrupt or altered weights).
    """
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            header, start = _read_header(fh, path)
            recorded = (header.get("__metadata__") or {}).get(DIGEST_KEY)
            if recorded is None:
                log.warning(
                    "checkpoint %s records no tensor digest (written before digests existed): "
                    "its weights cannot be checked",
                    path,
                )
                return None
            found = _data_digest(fh, start)
    except OSError as exc:
        raise CheckpointError(f"checkpoint {path} cannot be read: {exc.strerror or exc}") from exc
    if found != recorded:
        raise CheckpointError(
            f"checkpoint {path} is corrupt: its tensor data does not match the digest in its header "
            f"(sha256 {found[:12]}, recorded {str(recorded)[:12]}); restore or re-download it"
        )
    return found


def read_meta(path: str | Path) -> CheckpointMeta:
    """Read only the metadata of a checkpoint (no tensors are loaded).

    Raises:
        CheckpointError: If the file is missing, is not safetensors, or has no metadata.

    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        with safe_open(str(path), framework="pt") as fh:
            header = fh.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {path} is not a readable safetensors file: {exc}") from exc
    if _META_KEY not in header:
        raise CheckpointError(f"checkpoint {path} has no '{_META_KEY}' metadata: not a landslide checkpoint")
    return CheckpointMeta.from_json(header[_META_KEY])


def read_state_dict(path: str | Path, device: str = "cpu") -> dict[str, torch.Tensor]:
    """Load the tensors of a checkpoint safely (safetensors never executes code).

    A file that records a tensor digest is checked against it first.

    Raises:
        CheckpointError: If the file cannot be read as safetensors, or its data does not match
            its recorded digest.

    """
    _verify_if_recorded(Path(path))
    return _load_tensors(path, device)


def _load_tensors(path: str | Path, device: str = "cpu") -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path), device=device)
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {path} is not a readable safetensors file: {exc}") from exc


def _verify_if_recorded(path: Path) -> None:
    """:func:`verify_tensor_digest` for files that record a digest (any safetensors file, no warning)."""
    try:
        with safe_open(str(path), framework="pt") as fh:
            recorded = (fh.metadata() or {}).get(DIGEST_KEY)
    except (SafetensorError, OSError, ValueError):
        return  # the load that follows names the problem
    if recorded is not None:
        verify_tensor_digest(path)


def load_checkpoint(path: str | Path, device: str = "cpu") -> tuple[torch.nn.Module, CheckpointMeta]:
    """Build the registered model named in the metadata and load its weights strictly.

    Returns:
        ``(model in eval mode on device, metadata)``.

    Raises:
        CheckpointError: For a bad file, an unknown model, or missing/unexpected keys.

    """
    from pipeline.models.registry import build_model

    meta = read_meta(path)
    try:
        model = build_model(meta.model, meta.config)
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {path}: cannot build model {meta.model!r}: {exc}") from exc
    verify_tensor_digest(path)
    try:
        with safe_open(str(path), framework="pt") as fh:  # checks the header and every tensor's extent
            names = list(fh.keys())
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {path} is not a readable safetensors file: {exc}") from exc
    missing, unexpected = _key_diff(model.state_dict().keys(), names)
    if missing or unexpected:
        raise CheckpointError(
            f"checkpoint {path} does not match model {meta.model!r}: "
            f"missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
            f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}"
        )
    _read_into(model, Path(path))
    if meta.calibration is None:
        log.warning(
            "checkpoint %s has no calibration: its probabilities are raw sigmoid outputs "
            "(identity calibration)",
            path,
        )
    return model.to(device).eval(), meta


#: safetensors dtype names -> torch dtypes (those a checkpoint's tensors may have).
_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool,
}  # fmt: skip


def _read_into(model: torch.nn.Module, path: Path) -> None:
    """Read each tensor of the checkpoint at ``path`` straight into ``model``'s own (CPU) tensor.

    What ``load_state_dict(load_file(path))`` loads, byte for byte, without its copies: that
    holds the built model, a second copy of every weight and, while safetensors' mapping of
    the file is open, the file's pages (Clay-large: 1.3 GB each, resident together at the peak
    of a worker's load). Here a tensor whose dtype is the model's is read into it in place; one
    of another dtype passes through one buffer of its own size, converted as ``load_state_dict``
    converts it.

    Raises:
        CheckpointError: A tensor's dtype, shape or extent in the file does not fit the model's.
    """
    targets = model.state_dict()
    with open(path, "rb") as fh, torch.no_grad():
        header, start = _read_header(fh, path)
        for name, info in header.items():
            if name == "__metadata__":
                continue
            dst = targets[name]
            dtype = _DTYPES.get(str(info.get("dtype")))
            begin, end = info["data_offsets"]
            if dtype is None or list(dst.shape) != list(info["shape"]):
                raise CheckpointError(
                    f"checkpoint {path}: tensor {name} is {info.get('dtype')} {info['shape']}, "
                    f"the model's {tuple(dst.shape)}"
                )
            in_place = dtype == dst.dtype and dst.is_contiguous() and dst.device.type == "cpu"
            if in_place:
                buf = memoryview(dst.reshape(-1).view(torch.uint8).numpy())
            else:
                buf = memoryview(bytearray(end - begin))
            fh.seek(start + begin)
            if end - begin != len(buf) or fh.readinto(buf) != len(buf):
                raise CheckpointError(f"checkpoint {path} is not a readable safetensors file: tensor {name}")
            if not in_place and len(buf):
                dst.copy_(torch.frombuffer(buf, dtype=dtype).reshape(dst.shape))


def _key_diff(expected: Any, found: Any) -> tuple[list[str], list[str]]:
    exp, got = set(expected), set(found)
    return sorted(exp - got), sorted(got - exp)


def shipped_checkpoint() -> Path:
    """Path of the checkpoint shipped with the package (the demo's and the default sweep's)."""
    return Path(__file__).resolve().parent.parent / "demo" / "data" / "unet-l4s-sample.safetensors"
