"""Regional landslide mapping from Sentinel-2 L2A and a DEM, on Dask."""

__version__ = "0.1.0"
