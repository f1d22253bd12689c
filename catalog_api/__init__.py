"""The per-tenant model directory (public, behind Envoy) and the admin API (internal port only)."""
