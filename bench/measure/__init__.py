"""What is measured besides latency: timing primitives (BoundCall, CUDA events), NVML devices and
telemetry, the environment fingerprint, process memory, and device peaks for the roofline."""
