"""HTTP layer: request parsing helpers and one router module per endpoint group."""
