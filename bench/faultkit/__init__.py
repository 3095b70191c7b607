"""The fault suite's own Django project: settings, tasks, receivers, a private
PostgreSQL cluster and process helpers (see bench/faults.py and docs/reliability.md)."""
