"""What reaches the user on stderr: one-line errors, and no library noise.

Anything a user can cause (bad arguments, no scenes, unreachable catalog, a bad checkpoint, an
existing output) raises :class:`UserError` or a subclass; ``landslide`` prints
``landslide: error: <message>`` and exits non-zero, never a traceback.

Some libraries warn about things that are deliberate here and that a user can do nothing about;
:func:`quiet_library_warnings` silences exactly those (by message and module), so an error stays
one line and a successful run prints only its report. Every other warning still shows.
"""

from __future__ import annotations

import warnings


class UserError(Exception):
    """An error the user can fix, reported as one line with exit status ``exit_code``."""

    exit_code: int = 2

    def __init__(self, message: str, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


#: (message regex, module regex, why it is noise here). Matched against the start of the message
#: and of the module the warning is attributed to ("" matches any module).
KNOWN_NOISE: tuple[tuple[str, str, str], ...] = (
    (
        "Consolidated metadata is currently not part in the Zarr format 3 specification",
        r"zarr(\.|$)",
        "a --zarr-format 3 store is consolidated on purpose (one read opens it); readers that do "
        "not know consolidated metadata read the per-array metadata, which is always written",
    ),
    (
        "Failed to open Zarr store with consolidated metadata",
        "",  # attributed to whichever module called xr.open_zarr
        "a partial store has no consolidated metadata by design (written only at completion, so "
        "no reader sees a stale view); the advice to consolidate it does not apply",
    ),
    (
        "Dataset has no geotransform, gcps, or rpcs",
        r"rasterio\.warp$",
        "raised from odc-geo's threaded reprojection of in-memory blocks (the web pyramid), whose "
        "transforms are passed explicitly; every product's georeferencing is tested",
    ),
)


def quiet_library_warnings() -> None:
    """Ignore the warnings in :data:`KNOWN_NOISE` in this process (the CLI calls it once)."""
    for message, module, _why in KNOWN_NOISE:
        warnings.filterwarnings("ignore", message=message, module=module)
