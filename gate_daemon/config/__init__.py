"""The gate's config: frozen section types (sections), validation (load), the TOML reader (toml)."""
