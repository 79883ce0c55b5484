"""Scenarios: how requests are issued to a backend, and when measurement stops.

base.py holds the contract, registry.py the scenarios by name (one line each), and each scenario
is one module: single_stream, offline, server (with its generator, open_loop), multi_stream and
loadgen (with its LoadGen adapter, loadgen_sut). loops.py and stopping.py are the measured loop
and its stop rules, shared by all.
"""
