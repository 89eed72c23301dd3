"""Benchmarks of the system against its own ceilings: `make bench`."""
