"""gate-daemon: offline-first ticket validation for venue gates."""

__version__ = "0.1.0"
