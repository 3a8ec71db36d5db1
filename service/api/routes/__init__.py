"""Routers: core ones (health, models, metrics) and one per task plug-in."""
