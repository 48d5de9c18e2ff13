"""The scan service: a payload decided, committed and shown; the turnstile, the manifest watch, the clock."""
