"""The central as a pretix device: ``[source] kind = "pretix"`` (docs/PRETIX.md, "The bridge")."""
