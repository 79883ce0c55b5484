"""Scenarios: how requests are issued to a backend, and when measurement stops.

single-stream: one request (one batch) at a time, the next issued when the previous returns;
               the headline figure is per-request latency.
offline:       batches issued back to back for throughput; the headline figure is samples/s
               over the measured window (latency per batch is kept too).
server:        open-loop Poisson arrivals at a target rate (bench.scenarios.server); latency runs
               from each request's scheduled arrival, so queueing is never hidden.
multi-stream:  N closed-loop clients on threads (bench.scenarios.multistream), one cell per client
               count of the benchmark's `concurrency` sweep; the sweep stops once the SLO breaks.
loadgen-server, loadgen-offline: the same target under MLPerf LoadGen (bench.scenarios.loadgen);
               the cell keeps LoadGen's own figures and verdict beside ours.
On a CPU backend single-stream and offline both issue one batch at a time from one thread, so their
loops are the same code; they differ in what is reported first, and in later issues in how the GPU
is synchronised.
"""
SCENARIOS = ("single-stream", "offline", "server", "multi-stream", "loadgen-server", "loadgen-offline")
