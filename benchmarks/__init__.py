"""Throughput benchmarks and the original per-frame PIL recipe they compare against.

Not part of the installed library: run from the repository root as
``python -m benchmarks.<script>`` (or through ``tools/benchmark.py``); the scripts import
each other as ``benchmarks.<module>`` and use only ``multitrain``'s public API.
"""
