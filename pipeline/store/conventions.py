"""Georeferencing and metadata conventions of the result store, kept apart (rioxarray style).

* **CF**: the group carries ``Conventions = "CF-1.10"``; a grid-mapping variable ``spatial_ref``
  (``crs_wkt``, ``spatial_ref``, ``GeoTransform``, written by rioxarray) is named by every data
  variable's ``grid_mapping``; ``x``/``y`` are projection coordinates in metres (pixel centres);
  ``valid`` is a flag variable whose ``flag_values`` and ``flag_meanings`` match.
* **proj:** (GeoZarr / STAC projection): ``proj:code``, ``proj:wkt2``, ``proj:transform``,
  ``proj:shape`` on the group.

GDAL's Zarr driver reads the CF grid mapping since GDAL 3.9 (3.6 shows the transform but no CRS);
xarray + rioxarray read it with ``decode_coords="all"``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr
from affine import Affine
from pyproj import CRS

CONVENTIONS = "CF-1.10"
GRID_MAPPING = "spatial_ref"
#: The CF flags of ``valid``: ``flag_values`` and the matching ``flag_meanings``.
VALID_FLAGS = {"flag_values": [0, 1], "flag_meanings": "not_valid valid"}
VARIABLE_ATTRS: dict[str, dict[str, Any]] = {
    "probability": {"long_name": "landslide probability", "units": "1", "valid_min": 0.0, "valid_max": 1.0},
    "valid": {"long_name": "valid input (clear observation and DEM)", **VALID_FLAGS},
    "slope": {"long_name": "terrain slope", "units": "degree"},
}


def proj_attrs(crs: CRS, transform: Affine, shape: tuple[int, int]) -> dict[str, Any]:
    """The Zarr ``proj:`` attributes of a grid (GeoZarr / STAC projection convention)."""
    epsg = crs.to_epsg()
    return {
        "proj:code": f"EPSG:{epsg}" if epsg else None,
        "proj:wkt2": crs.to_wkt(),
        "proj:transform": [transform.a, transform.b, transform.c, transform.d, transform.e, transform.f],
        "proj:shape": [int(shape[0]), int(shape[1])],
    }


def grid_coords(transform: Affine, shape: tuple[int, int]) -> dict[str, np.ndarray]:
    """Pixel-centre coordinates ``y`` (decreasing) and ``x`` of a north-up grid."""
    rows, cols = shape
    x = transform.c + transform.a * (np.arange(cols) + 0.5)
    y = transform.f + transform.e * (np.arange(rows) + 0.5)
    return {"y": y, "x": x}


def apply(ds: xr.Dataset, crs: CRS, transform: Affine) -> xr.Dataset:
    """Write the CF and ``proj:`` conventions onto a dataset of the store's layout."""
    import rioxarray  # noqa: F401  (registers the .rio accessor)

    for name, attrs in VARIABLE_ATTRS.items():
        ds[name].attrs.update(attrs)
    ds["x"].attrs.update(standard_name="projection_x_coordinate", units="m", axis="X")
    ds["y"].attrs.update(standard_name="projection_y_coordinate", units="m", axis="Y")
    ds = ds.rio.write_crs(crs, grid_mapping_name=GRID_MAPPING).rio.write_transform(transform)
    for name in VARIABLE_ATTRS:
        ds[name].attrs["grid_mapping"] = GRID_MAPPING
    ds.attrs["Conventions"] = CONVENTIONS
    ds.attrs.update(proj_attrs(crs, transform, (int(ds.sizes["y"]), int(ds.sizes["x"]))))
    return ds
