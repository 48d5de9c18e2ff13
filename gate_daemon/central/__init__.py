"""The reference central server, for tests, demos and small venues.

It implements the upstream contract (docs/upstream.openapi.yaml, docs/CENTRAL.md):

config      [central] TOML, validated into a frozen ``CentralConfig``
manifests   signed manifest versions built from event.toml + tickets.csv, deltas on demand
wire        the request bodies and query strings, parsed into values or a named error
search      participant search over the manifest (pure)
service     ``Central``: what each route does, between the wire and the store

Its SQLite file (like every SQL statement of the project) is in ``gate_daemon.store.central``:
``checkin_book`` (check-ins, conflicts, validations, heartbeats, manifests built), ``schema``
(its tables, as migrations) and ``checkins`` (what a pushed batch collides with).
app         the aiohttp application (signed requests, named JSON errors)
cli         ``gate-central``: run, check-config, report
"""
