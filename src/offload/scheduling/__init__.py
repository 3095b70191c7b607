"""Scheduling policy as pure functions (no database, no clock of their own)."""
