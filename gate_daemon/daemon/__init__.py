"""The running gate: wiring and lifecycle, the status snapshot, the control socket, systemd."""
