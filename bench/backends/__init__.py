"""Backends: one module per runtime behind one contract (base.Backend), found by name in one
registry that also holds each backend's knobs record (registry.BACKENDS).

A user backend, `backend = "package.module:Class"` in a target, implements bench.backends.Backend
(load, bind, outputs; the optional capabilities have defaults there).
"""
from bench.backends.base import Backend, BackendInfo
from bench.backends.registry import create
from bench.measure.timing import BoundCall, DeviceEvents

__all__ = ["Backend", "BackendInfo", "BoundCall", "DeviceEvents", "create"]
