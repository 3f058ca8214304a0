"""Tests of the products (polygons, COG, STAC, pyramid, quicklook, export)."""
