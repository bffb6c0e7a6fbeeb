"""Benchmarks and their baselines: `make bench` (see README, Performance)."""
