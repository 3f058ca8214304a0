"""The GPU run: ``bash bench/gpu/run.sh`` on a machine with a CUDA GPU (see README.md here)."""
