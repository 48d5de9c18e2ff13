"""The gate on the network: its HTTP API on the venue LAN."""
