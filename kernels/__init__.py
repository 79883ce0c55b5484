"""numba kernels of the bench harness: statistics over 1-D arrays (arrays in, arrays or scalars out).

`kernels` is also the import name of an unrelated PyPI package; `__bench_kernels__` lets
`bench.stats` tell this project's package from that one and fail with a clear message.
"""
__bench_kernels__ = 1
