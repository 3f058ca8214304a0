"""Benchmarks of the landslide sweep: ``python -m bench.run`` (``make bench``)."""
