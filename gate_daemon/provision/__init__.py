"""Provisioning: key files, event and ticket sources, and building signed manifests."""
