#!/usr/bin/env bash
# Set up the peer venvs and run the priority benchmark (urgent tasks behind a
# 100,000-task low-priority backlog) for every peer; JSON lines on stdout.
# Extra arguments (--low N, --urgent N, --every S, --timeout S) go to both harnesses.
# Needs PostgreSQL on 127.0.0.1:5432 (user postgres, trust) and Redis on 127.0.0.1:6379.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
bash "$ROOT/bench/peers/setup.sh" all >&2
"$ROOT/bench/.venv-peers-dtdb/bin/python" "$ROOT/bench/peers/dtdb/dtdb_priority.py" --db both "$@"
"$ROOT/bench/.venv-peers-celery/bin/python" "$ROOT/bench/peers/celery/celery_priority.py" "$@"
