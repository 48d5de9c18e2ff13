"""The gate's config: frozen section types (sections), validation (load, pins), the TOML reader (toml)."""
