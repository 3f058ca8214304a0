"""Products written from a finished result store: polygons, COG, STAC, web pyramid, quicklook."""
