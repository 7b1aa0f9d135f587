"""Benchmarks: scripts that print tables and ratios against peers measured in the same run."""
