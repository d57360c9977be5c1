"""Benchmarks of dffml-archive (see benchmarks/README.md)."""
