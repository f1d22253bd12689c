"""Lime's benchmark: the mock upstream, bare Envoy and the full stack (and optionally LiteLLM) under the same
load, on one machine, reported as absolute numbers and as ratios against bare Envoy measured in the same run.

Run it with ``make bench`` (``QUICK=1`` for a short run, ``LITELLM=1`` to add LiteLLM); see docs/performance.md.
"""
