"""Reading Clay v1.5 weights safely: official Lightning checkpoints, state dicts, safetensors.

The official file ``v1.5/clay-v1.5.ckpt`` (HuggingFace ``made-with-clay/Clay``) is a Lightning
checkpoint: a pickle whose ``state_dict`` holds the MAE's tensors, the encoder's under
``model.encoder.``. It is read with ``torch.load(weights_only=True)``, which refuses any object
type not on PyTorch's allow-list, so a malicious file cannot run code. Lightning may store its
``AttributeDict`` (a plain ``dict`` subclass) or ``pathlib`` paths in the hyper-parameters; those
names alone are mapped to inert stand-ins. Anything else is refused with the offending names.
"""

from __future__ import annotations

import math
import pickle
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from pipeline.models.checkpoint import CheckpointError

if TYPE_CHECKING:
    from pipeline.models.clay import ClayEncoder

#: HuggingFace repository and file of the official Clay v1.5 weights.
CLAY_REPO_ID = "made-with-clay/Clay"
CLAY_FILENAME = "v1.5/clay-v1.5.ckpt"
CLAY_URL = f"https://huggingface.co/{CLAY_REPO_ID}/blob/main/{CLAY_FILENAME}"

_ENCODER_PREFIX = "model.encoder."


class _InertDict(dict[Any, Any]):
    """Stand-in for Lightning's ``AttributeDict`` (a ``dict`` subclass): data only."""


class _InertPath:
    """Stand-in for ``pathlib`` paths in hyper-parameters: keeps the parts, does nothing."""

    def __init__(self, *parts: Any) -> None:
        self.parts = parts


#: Global names allowed in addition to PyTorch's weights-only allow-list, and their stand-ins.
_HARMLESS_GLOBALS: dict[str, type] = {
    "lightning.fabric.utilities.data.AttributeDict": _InertDict,
    "pytorch_lightning.utilities.parsing.AttributeDict": _InertDict,
    "lightning_fabric.utilities.data.AttributeDict": _InertDict,
    "pathlib.PosixPath": _InertPath,
    "pathlib.WindowsPath": _InertPath,
    "pathlib.PurePosixPath": _InertPath,
}


def read_pickled_checkpoint(path: Path) -> Any:
    """Load a pickled checkpoint with ``weights_only=True`` (memory-mapped where possible).

    Raises:
        CheckpointError: If the file is unreadable or needs an object type outside the
            allow-list (the message names the types; nothing is executed).

    """
    try:
        unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception:  # legacy (non-zip) format: let weights_only loading decide
        unsafe = []
    refused = sorted(name for name in unsafe if name not in _HARMLESS_GLOBALS)
    if refused:
        raise CheckpointError(
            f"checkpoint {path} needs object types that are not allowed: {', '.join(refused[:5])}"
        )
    stand_ins: list[Callable[..., Any] | tuple[Callable[..., Any], str]] = [
        (_HARMLESS_GLOBALS[name], name) for name in unsafe
    ]
    try:
        with torch.serialization.safe_globals(stand_ins):
            try:
                return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            except RuntimeError as exc:
                if "mmap" not in str(exc):
                    raise
                return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        detail = next((line.strip() for line in str(exc).splitlines() if "Unsupported" in line), "")
        raise CheckpointError(
            f"checkpoint {path} is not a file of plain tensors and data (refused by the "
            f"weights-only loader, nothing was executed): {detail or type(exc).__name__}"
        ) from exc
    except (RuntimeError, OSError, EOFError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"checkpoint {path} cannot be read: {first}") from exc


def encoder_state_dict(raw: Any, path: Path) -> dict[str, torch.Tensor]:
    """Extract the encoder's tensors, stripping ``model.encoder.``; other keys are ignored.

    A mapping without any ``model.encoder.`` key is taken as a bare encoder state dict.

    Raises:
        CheckpointError: If no tensors are found.

    """
    if isinstance(raw, dict) and isinstance(raw.get("state_dict"), dict):
        raw = raw["state_dict"]
    if not isinstance(raw, dict) or not raw:
        raise CheckpointError(f"checkpoint {path} holds no state dict")
    tensors = {str(k): v for k, v in raw.items() if isinstance(v, torch.Tensor)}
    if any(k.startswith(_ENCODER_PREFIX) for k in tensors):
        tensors = {k[len(_ENCODER_PREFIX) :]: v for k, v in tensors.items() if k.startswith(_ENCODER_PREFIX)}
    return tensors


def infer_config_kwargs(state: dict[str, torch.Tensor], path: Path, dim_head: int) -> dict[str, Any]:
    """Infer :class:`~pipeline.models.clay.ClayConfig` fields from tensor shapes.

    ``dim`` from ``cls_token``; ``depth`` from the block indices; ``heads = inner / dim_head``
    with ``inner = rows(to_qkv) / 3``; ``mlp_ratio = rows(net.1) / dim``;
    ``patch_size = sqrt(rows(fc_weight) / dim)``; the weight-generator sizes from its tensors.

    Raises:
        CheckpointError: If a tensor needed for the inference is missing or inconsistent.

    """
    generator = "patch_embedding.weight_generator."
    needed = ["cls_token", "transformer.layers.0.0.to_qkv.weight", "transformer.layers.0.1.net.1.weight",
              generator + "fc_weight.weight", generator + "weight_tokens",
              generator + "encoder.layers.0.linear1.weight"]  # fmt: skip
    missing = [k for k in needed if k not in state]
    if missing:
        raise CheckpointError(f"checkpoint {path} is not a Clay encoder: missing keys {missing}")
    dim = int(state["cls_token"].shape[-1])
    inner = int(state["transformer.layers.0.0.to_qkv.weight"].shape[0]) // 3
    patch_area = int(state[generator + "fc_weight.weight"].shape[0]) // dim
    patch_size = math.isqrt(patch_area)
    if inner % dim_head or patch_size**2 != patch_area:
        raise CheckpointError(
            f"checkpoint {path}: attention width {inner} / dim_head {dim_head} or patch area "
            f"{patch_area} is not consistent with a Clay encoder"
        )
    block = re.compile(r"^transformer\.layers\.(\d+)\.")
    wave_layer = re.compile(r"^patch_embedding\.weight_generator\.encoder\.layers\.(\d+)\.")
    return {
        "dim": dim,
        "depth": 1 + max(int(m.group(1)) for k in state if (m := block.match(k))),
        "heads": inner // dim_head,
        "dim_head": dim_head,
        "mlp_ratio": int(state["transformer.layers.0.1.net.1.weight"].shape[0]) / dim,
        "patch_size": patch_size,
        "wave_dim": int(state[generator + "weight_tokens"].shape[1]),
        "num_latent_tokens": int(state[generator + "weight_tokens"].shape[0]),
        "wave_ff": int(state[generator + "encoder.layers.0.linear1.weight"].shape[0]),
        "wave_layers": 1 + max(int(m.group(1)) for k in state if (m := wave_layer.match(k))),
    }


def load_clay_state_dict(
    path: str | Path, cls: type[ClayEncoder], dim_head: int = 64, wave_heads: int = 4
) -> ClayEncoder:
    """Build ``cls`` from the shapes in ``path`` and load its tensors with strict matching.

    Raises:
        CheckpointError: Missing file, unsafe/unreadable content, or mismatched keys/shapes.

    """
    from pipeline.models.clay import ClayConfig

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"Clay checkpoint {path} does not exist; get {CLAY_FILENAME} from {CLAY_URL}")
    if path.suffix == ".safetensors":
        from pipeline.models.checkpoint import read_state_dict

        raw: Any = read_state_dict(path)
    else:
        raw = read_pickled_checkpoint(path)
    state = encoder_state_dict(raw, path)
    config = ClayConfig(**infer_config_kwargs(state, path, dim_head), wave_heads=wave_heads)
    with torch.device("meta"):
        encoder = cls(config)
    expected, found = set(encoder.state_dict()), set(state)
    missing, unexpected = sorted(expected - found), sorted(found - expected)
    if missing or unexpected:
        raise CheckpointError(
            f"checkpoint {path} does not match the Clay encoder: missing keys {missing[:5]}"
            f"{'...' if len(missing) > 5 else ''}, unexpected keys {unexpected[:5]}"
            f"{'...' if len(unexpected) > 5 else ''}"
        )
    try:
        encoder.load_state_dict({k: v.float() for k, v in state.items()}, strict=True, assign=True)
    except RuntimeError as exc:
        raise CheckpointError(f"checkpoint {path}: {str(exc).strip().splitlines()[-1].strip()}") from exc
    return encoder.eval()


def download_clay_checkpoint(cache_dir: str | Path | None = None, local_files_only: bool = False) -> Path:
    """Fetch the official Clay v1.5 checkpoint into the HuggingFace cache (or ``cache_dir``).

    Raises:
        CheckpointError: When the file cannot be downloaded (offline, blocked, not found).

    """
    try:
        from huggingface_hub import hf_hub_download

        local = hf_hub_download(
            repo_id=CLAY_REPO_ID,
            filename=CLAY_FILENAME,
            cache_dir=None if cache_dir is None else str(cache_dir),
            local_files_only=local_files_only,
        )
    except Exception as exc:  # offline, DNS, HTTP, missing from cache: one clear message
        raise CheckpointError(
            f"cannot download the Clay v1.5 weights ({type(exc).__name__}); download {CLAY_FILENAME} "
            f"from {CLAY_URL} and pass --clay-checkpoint PATH"
        ) from exc
    return Path(local)
