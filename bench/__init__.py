"""bench: a high-throughput inference benchmarking harness."""
__version__ = "0.1.0"
