"""Command-line entry points: gatectl, gate-daemon and the hardware walk-through (hwtest)."""
