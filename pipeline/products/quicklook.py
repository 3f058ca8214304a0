"""Quicklook PNG: probability map with colour bar, km scale bar, threshold contour and title.

The colour scale is the calibrated probability, fixed at 0-1, with the threshold marked on it.

Large mosaics are block-averaged to at most :data:`MAX_PIXELS` on the long side before plotting
(lazily, through dask), so memory stays bounded. No-data is drawn light grey. With a reference
mask GeoTIFF (e.g. the demo's known landslides), a second panel shows it on the same grid with
the predicted threshold contour on top.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import rioxarray
import xarray as xr
from matplotlib.axes import Axes
from matplotlib.colors import ListedColormap
from matplotlib.patches import Rectangle
from rasterio.enums import Resampling

from pipeline.errors import UserError
from pipeline.store.reader import store_crs, store_threshold, store_transform

MAX_PIXELS = 1600
FIG_WIDTH_IN = 10.0
DPI = 120
NODATA_COLOUR = "#d9d9d9"


def _coarse(ds: xr.Dataset) -> tuple[np.ndarray, int]:
    """Block-average the probability to at most MAX_PIXELS on the long side; return it and the factor."""
    ny, nx = ds.sizes["y"], ds.sizes["x"]
    f = max(1, math.ceil(max(ny, nx) / MAX_PIXELS))
    prob = ds["probability"]
    if f > 1:
        prob = prob.coarsen(y=f, x=f, boundary="pad").mean()
    return np.asarray(prob.values, dtype=np.float32), f


def _nice_length(span_m: float) -> float:
    target = span_m / 5
    exp = 10.0 ** math.floor(math.log10(target))
    return max(float(v) * exp for v in (1, 2, 5) if v * exp <= target)


def _scale_bar(ax: Axes, extent_km: tuple[float, float, float, float]) -> None:
    left, right, bottom, top = extent_km
    length_km = _nice_length((right - left) * 1000) / 1000
    x0 = left + 0.05 * (right - left)
    y0 = bottom + 0.06 * (top - bottom)
    h = 0.012 * (top - bottom)
    ax.add_patch(Rectangle((x0, y0), length_km, h, color="black", zorder=5))
    ax.add_patch(Rectangle((x0, y0), length_km / 2, h, color="white", ec="black", lw=0.8, zorder=6))
    label = f"{length_km:g} km" if length_km >= 1 else f"{length_km * 1000:g} m"
    ax.text(
        x0 + length_km / 2,
        y0 + 2.2 * h,
        label,
        ha="center",
        va="bottom",
        fontsize=9,
        zorder=6,
        bbox={"facecolor": "white", "alpha": 0.7, "edgecolor": "none", "pad": 1.5},
    )


def _labels_on_grid(labels_path: Path, ds: xr.Dataset, shape: tuple[int, int], factor: int) -> np.ndarray:
    """Read a reference mask and resample it (nearest) onto the (coarsened) store grid."""
    t = store_transform(ds)
    dst_transform = t @ t.scale(factor, factor)
    opened = rioxarray.open_rasterio(labels_path, masked=True)
    if not isinstance(opened, xr.DataArray):
        raise UserError(f"{labels_path} is not a single raster")
    ref = opened.isel(band=0, drop=True)
    out = ref.rio.reproject(
        store_crs(ds).to_wkt(),
        shape=shape,
        transform=dst_transform,
        resampling=Resampling.max if factor > 1 else Resampling.nearest,
    )
    return np.asarray(out.values, dtype=np.float32)


def write_quicklook(
    ds: xr.Dataset,
    path: str | os.PathLike[str],
    labels_path: str | os.PathLike[str] | None = None,
    *,
    threshold: float | None = None,
) -> Path:
    """Write the quicklook PNG of a result store.

    Args:
        ds: The result store (lazy).
        path: Output ``.png``.
        labels_path: Optional reference mask GeoTIFF (non-zero = landslide) for a side-by-side panel.
        threshold: Contour level; the store's threshold if None.

    Returns:
        ``path``.

    """
    thr = store_threshold(ds, threshold)
    prob, factor = _coarse(ds)
    t = store_transform(ds)
    ny, nx = ds.sizes["y"], ds.sizes["x"]
    x_edges = (t.c, t.c + t.a * nx)
    y_edges = (t.f, t.f + t.e * ny)
    extent_km = (min(x_edges) / 1000, max(x_edges) / 1000, min(y_edges) / 1000, max(y_edges) / 1000)
    panels = 2 if labels_path is not None else 1
    aspect = (extent_km[3] - extent_km[2]) / max(extent_km[1] - extent_km[0], 1e-9)
    height = min(12.0, max(3.5, 0.82 * FIG_WIDTH_IN / panels * aspect + 1.5))
    fig, axes = plt.subplots(
        1, panels, figsize=(FIG_WIDTH_IN, height), dpi=DPI, squeeze=False, layout="constrained"
    )
    cmap = plt.get_cmap("inferno").copy()
    cmap.set_bad(NODATA_COLOUR)
    ax = axes[0, 0]
    im = ax.imshow(
        np.ma.masked_invalid(prob), cmap=cmap, vmin=0, vmax=1, extent=extent_km, interpolation="nearest"
    )
    filled = np.nan_to_num(prob, nan=0.0)
    ys = np.linspace(extent_km[3], extent_km[2], prob.shape[0])
    xs = np.linspace(extent_km[0], extent_km[1], prob.shape[1])
    if np.nanmax(filled) >= thr > np.nanmin(filled):
        ax.contour(xs, ys, filled, levels=[thr], colors="cyan", linewidths=0.8)
    ax.set_title(f"probability (contour at {thr:g})", fontsize=10)
    cbar = fig.colorbar(im, ax=axes[0, :].tolist(), shrink=0.85, pad=0.02)
    cbar.set_label("calibrated landslide probability (0-1)")
    cbar.ax.axhline(thr, color="cyan", linewidth=2)  # the decision threshold on the scale
    cbar.set_ticks(sorted({0.0, 0.25, 0.5, 0.75, 1.0, round(thr, 2)}))
    _scale_bar(ax, extent_km)
    if labels_path is not None:
        ref = _labels_on_grid(Path(labels_path), ds, prob.shape, factor)
        ref_img = np.where(np.isfinite(ref), (ref > 0).astype(np.float32), np.nan)
        ax2 = axes[0, 1]
        ax2.imshow(
            np.ma.masked_invalid(ref_img),
            cmap=ListedColormap(["#f7f7f7", "#b2182b"]),
            vmin=0,
            vmax=1,
            extent=extent_km,
            interpolation="nearest",
        )
        if np.nanmax(filled) >= thr > np.nanmin(filled):
            ax2.contour(xs, ys, filled, levels=[thr], colors="#2166ac", linewidths=0.8)
        ax2.set_title("reference mask (red) and predicted outline (blue)", fontsize=10)
        _scale_bar(ax2, extent_km)
    for a in axes[0]:
        a.set_xlabel(f"easting (km, {store_crs(ds).to_string()})")
        a.ticklabel_format(useOffset=False, style="plain")
    axes[0, 0].set_ylabel("northing (km)")
    attrs = ds.attrs
    event = attrs.get("landslide:event_id")
    title = (
        f"Landslide probability {attrs.get('landslide:start', '?')} to {attrs.get('landslide:end', '?')}"
        + (f" ({event})" if event else "")
        + f"\nmodel {attrs.get('landslide:model', '?')}, threshold {thr:g}"
    )
    fig.suptitle(title, fontsize=12)
    out = Path(path)
    fig.savefig(out, format="png", dpi=DPI)
    plt.close(fig)
    return out
