"""Benchmarks: each module runs with ``python -m benchmarks.<name>`` and writes a
JSON file under ``benchmarks/results/`` plus a table on stdout."""
