"""Helpers shared by tests (they build their own tiny data and models)."""
