"""Envoy ext_proc service: rewrites the request for its upstream and taps the response."""
