"""The reference central's SQLite file: schema, check-ins, conflicts, validations, heartbeats."""
