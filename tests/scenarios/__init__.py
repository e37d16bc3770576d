"""Acceptance scenarios S01-S34: fixtures in fixtures/scenarios, expectations here."""
