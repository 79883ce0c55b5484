"""Models for the fleet tests (tests/test_fleet.py): they misbehave only inside a worker process
(multiprocessing names it bench-cell-N), never while the driver prepares them."""
from __future__ import annotations

import multiprocessing
import os
import signal
import time
from pathlib import Path

import torch


class _Mlp(torch.nn.Module):
    def __init__(self, on_forward):
        super().__init__()
        self.lin = torch.nn.Linear(8, 4)
        self.on_forward = on_forward

    def forward(self, x):
        if multiprocessing.current_process().name.startswith("bench-cell-"):
            self.on_forward()
        return self.lin(x)


def _example():
    return (torch.rand(2, 8),)


def killed(marker: str = ""):
    """Its worker is killed by SIGKILL mid-unit: every time, or (with `marker`, a file path) only
    the first time any worker runs it."""
    def die():
        if marker:
            if Path(marker).exists():
                return
            Path(marker).write_text(str(os.getpid()))
        os.kill(os.getpid(), signal.SIGKILL)

    torch.manual_seed(0)
    return _Mlp(die), _example()


def kills_its_node(node_env: str = "c"):
    """On the node whose BENCH_TEST_NODE is `node_env`, its worker kills the node's raylet (the
    Ray worker's parent) with SIGKILL: the whole node is lost mid-unit. Elsewhere a plain model."""
    def kill_node():
        if os.environ.get("BENCH_TEST_NODE") == node_env:
            import psutil

            raylet = psutil.Process().parent()  # worker -> its host -> the Ray worker -> the node's raylet
            while raylet is not None and raylet.name() != "raylet":
                raylet = raylet.parent()
            assert raylet is not None, "no raylet above this worker"
            raylet.kill()
            time.sleep(120)  # the unit never finishes: the node's loss ends it (the Ray worker dies with its raylet)

    torch.manual_seed(0)
    return _Mlp(kill_node), _example()
