"""Envoy ext_authz service: keys, tenants, packages; later quotas and reservations."""
