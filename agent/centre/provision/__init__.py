"""Provisioning, centre side: the district's client CA, per-gate bundles, the broker ACL
and the certificate revocation list. Staff tooling run by ``gatectl``; part of
``agent.centre`` (imports core, protocol and sync only; used by the CLI)."""
