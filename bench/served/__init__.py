"""Served targets: a model behind a server, measured over the network (issue 28).

endpoint: a served target's knobs (url, model, headers, TLS, timeouts) and the pre-flight check;
driver: the asyncio load generator (open-loop Poisson and closed-loop concurrency) that drives a
backend's Requester without coordinated omission, counting every failed request by its kind.
The backends themselves (kserve-v2, openai) are bench.backends modules like any other.
"""
