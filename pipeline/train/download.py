"""``landslide data download``: the full Landslide4Sense dataset, with test masks, from HuggingFace.

The mirror :data:`MIRROR_REPO` holds ``images/{train,validation,test}/image_N.h5`` and
``annotations/{split}/mask_N.h5`` (3799 / 245 / 800 chips). ``huggingface_hub.snapshot_download``
resumes interrupted downloads and skips complete files; afterwards every file is checked against
the hub's listing (size, and the SHA-256 of LFS files or the git blob id of small files) and the
file counts per split are checked.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from pipeline.errors import UserError

log = logging.getLogger(__name__)

MIRROR_REPO = "ibm-nasa-geospatial/Landslide4sense"
ZENODO_DOI = "10.5281/zenodo.10463239"
EXPECTED_COUNTS = {"train": 3799, "validation": 245, "test": 800}
_PATTERNS = ["images/*", "annotations/*"]

WHERE_TO_GET = (
    f"download it elsewhere from https://huggingface.co/datasets/{MIRROR_REPO} (with test masks) or "
    f"Zenodo doi:{ZENODO_DOI}, and pass its directory to --data"
)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for piece in iter(lambda: fh.read(1 << 20), b""):
            digest.update(piece)
    return digest.hexdigest()


def _git_blob_id(path: Path) -> str:
    data = path.read_bytes()
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


def check_counts(dest: Path) -> dict[str, int]:
    """Chips per split under ``dest`` (images with a matching mask).

    Raises:
        UserError: If a split has a different number of images or masks than the dataset.
    """
    counts = {}
    for split, expected in EXPECTED_COUNTS.items():
        images = len(list((dest / "images" / split).glob("image_*.h5")))
        masks = len(list((dest / "annotations" / split).glob("mask_*.h5")))
        if images != expected or masks != expected:
            raise UserError(
                f"{dest}: {split} has {images} images and {masks} masks, expected {expected}; "
                "re-run `landslide data download` to resume"
            )
        counts[split] = images
    return counts


def download(dest: str | Path, repo_id: str = MIRROR_REPO, verify: bool = True) -> dict[str, int]:
    """Download (or resume) the mirror into ``dest`` and verify it.

    Returns:
        Chips per split.

    Raises:
        UserError: Offline or unreachable hub (saying where to get the data), or a file whose
            checksum or size does not match the hub's listing.
    """
    from huggingface_hub import HfApi, snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError
    from huggingface_hub.hf_api import RepoFile

    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    try:
        log.info("downloading %s into %s (resumable)", repo_id, dest)
        snapshot_download(repo_id, repo_type="dataset", local_dir=dest, allow_patterns=_PATTERNS)
        listing = [
            f
            for f in HfApi().list_repo_tree(repo_id, repo_type="dataset", recursive=True)
            if getattr(f, "size", None) is not None and f.path.startswith(("images/", "annotations/"))
        ]
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError) as exc:
        raise UserError(
            f"cannot reach the HuggingFace hub for {repo_id} ({type(exc).__name__}); {WHERE_TO_GET}"
        ) from exc
    if verify:
        for entry in listing:
            if not isinstance(entry, RepoFile):
                continue
            path = dest / entry.path
            if not path.is_file() or path.stat().st_size != entry.size:
                raise UserError(f"{path}: missing or wrong size; re-run `landslide data download` to resume")
            if entry.lfs is not None:
                ok = _sha256(path) == entry.lfs.sha256
            else:
                ok = _git_blob_id(path) == entry.blob_id
            if not ok:
                raise UserError(f"{path}: checksum does not match the hub; delete it and re-run the download")
        log.info("verified %d files against the hub's checksums", len(listing))
    return check_counts(dest)
