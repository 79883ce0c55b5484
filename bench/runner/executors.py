"""The executors `bench run --executor NAME` knows, and how each is made (bench.runner.executor says
what an executor is)."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from bench.runner.executor import Executor, LocalExecutor

EXECUTORS = ("local", "ray")


def executor_factory(name: str, address: str | None = None) -> Callable[[Path], Executor]:
    """The executor `bench run --executor NAME` asks for, checked now (an unknown name, Ray not
    installed, an address that does not answer: an ExecutorError, exit 2) and made when the run
    has its scratch directory."""
    from bench.codec import did_you_mean
    from bench.errors import ExecutorError

    if name not in EXECUTORS:
        raise ExecutorError(f"--executor {name!r} is not an executor{did_you_mean(name, EXECUTORS)} "
                            f"(allowed: {', '.join(EXECUTORS)})")
    if name == "local":
        if address:
            raise ExecutorError("--address names a Ray cluster's head; it needs --executor ray")
        return LocalExecutor
    from bench.runner import ray_executor  # Ray only where asked for

    ray_executor.import_ray()
    if address and address != "local" and not address.startswith("ray://"):
        ray_executor.check_answers(address, ray_executor.CONNECT_TIMEOUT_S)
    return lambda scratch: ray_executor.RayExecutor(address)
