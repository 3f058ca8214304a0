"""Defaults of the product writers, in a module light enough for the CLI to import at start-up.

``landslide --help`` shows these values without importing xarray, rasterio or geopandas.
"""

from __future__ import annotations

#: Default minimum polygon area: two 10 m pixels.
DEFAULT_MIN_AREA_M2 = 200.0
#: Default window side in pixels for the polygon and COG passes (a multiple of the sweep's
#: 256-pixel chunks).
DEFAULT_WINDOW = 2048
#: Layer name of the polygon products (the GeoJSON ``name`` member, the layer QGIS and ogrinfo
#: show).
POLYGON_LAYER = "landslides"
