"""The web map of a sweep: a static folder with MapLibre GL JS, opened from file:// or any server.

:func:`write_web_map` writes it; :mod:`.tiles` makes the XYZ probability tiles; :mod:`.browser`
drives a headless Chromium (tests, screenshots); :mod:`.screenshot` makes the docs' images.
"""

from __future__ import annotations

from pipeline.products.webmap.writer import MAPLIBRE_VERSION, write_web_map

__all__ = ["MAPLIBRE_VERSION", "write_web_map"]
