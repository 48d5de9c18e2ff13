"""Benchmarks behind ``gatectl bench``: budgets are measured here, never asserted in tests."""
