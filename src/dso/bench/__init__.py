"""Benchmarks: measured side by side in one run, reported as medians, never asserted in tests."""
