#!/usr/bin/env bash
# Set up the peer venvs and run every peer benchmark; JSON lines on stdout.
# (The priority benchmark is separate, about 4 minutes: bash bench/peers/run-priority.sh)
# Needs PostgreSQL on 127.0.0.1:5432 (user postgres, trust) and Redis on 127.0.0.1:6379.
# Extra arguments go to the django-tasks-db harness only.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
bash "$ROOT/bench/peers/setup.sh" all >&2
"$ROOT/bench/.venv-peers-dtdb/bin/python" "$ROOT/bench/peers/dtdb/dtdb_bench.py" --db both "$@"
"$ROOT/bench/.venv-peers-celery/bin/python" "$ROOT/bench/peers/celery/celery_bench.py"
"$ROOT/bench/.venv-peers-pgqueuer/bin/python" "$ROOT/bench/peers/pgqueuer/pgqueuer_bench.py"
"$ROOT/bench/.venv-peers-huey/bin/python" "$ROOT/bench/peers/huey/huey_bench.py"
"$ROOT/bench/.venv-peers-procrastinate/bin/python" "$ROOT/bench/peers/procrastinate/procrastinate_bench.py"
