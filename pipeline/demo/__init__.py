"""The embedded demo: a small real scene (COGs + local STAC) and the shipped checkpoint."""
