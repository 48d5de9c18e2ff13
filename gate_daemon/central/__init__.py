"""The reference central server, for tests, demos and small venues.

It implements the upstream contract (docs/upstream.openapi.yaml, docs/CENTRAL.md):

config      [central] TOML, validated into a frozen ``CentralConfig``
manifests   signed manifest versions built from event.toml + tickets.csv, deltas on demand
store       the SQLite file: check-ins, conflicts, validations, heartbeats, manifests built
schema      its tables, as migrations (run by ``gate_daemon.store.migrations``)
checkins    what a pushed batch collides with in the stored check-ins
wire        the request bodies and query strings, parsed into values or a named error
search      participant search over the manifest (pure)
service     ``Central``: what each route does, between the wire and the store
app         the aiohttp application (signed requests, named JSON errors)
cli         ``gate-central``: run, check-config, report
"""
