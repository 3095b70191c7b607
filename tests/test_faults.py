"""The fault suite (bench/faults.py) in its bounded CI configuration (``--quick``).

Each test runs one scenario of the suite in its own process, against real servers, on
the database this run of the suite is for (OFFLOAD_TEST_DB): SQLite in a temporary
file, PostgreSQL on a private cluster the harness starts and removes (never the shared
server). The harness counts lost, ran-twice, completed-twice and stuck tasks from a
ledger outside the task table and checks its expectations; a test fails with every
expectation that did not hold. ``make faults`` runs the full sizes.
"""

import json
import os
import subprocess
import sys

import pytest

from bench.faultkit.cluster import find_bindir
from tests.conftest import ROOT

pytestmark = pytest.mark.process

ENGINE = os.environ.get("OFFLOAD_TEST_DB", "sqlite")
BOTH = ["storm", "sigstop", "corrupt", "sigterm", "receivers", "atomic", "at-least-once", "chords"]
POSTGRES_ONLY = ["pg-restart", "pg-outage"]
SCENARIOS = BOTH + (POSTGRES_ONLY if ENGINE == "postgres" else [])


@pytest.fixture(scope="module", autouse=True)
def postgres_binaries():
    if ENGINE == "postgres" and find_bindir() is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true: the fault suite needs PostgreSQL's binaries (initdb, pg_ctl) "
                        "for its private cluster; set FAULTS_PG_BIN")
        pytest.skip("no PostgreSQL binaries for a private cluster (set FAULTS_PG_BIN)")


def run_scenario(name, tmp_path, timeout=220):
    out = tmp_path / "rows.json"
    cmd = [sys.executable, str(ROOT / "bench" / "faults.py"), "--db", ENGINE, "--quick",
           "--only", name, "--json", str(out), "--workdir", str(tmp_path / "work")]
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    assert out.exists() and out.read_text().strip(), f"the harness wrote no result:\n{proc.stderr[-3000:]}"
    [row] = json.loads(out.read_text())
    return row, proc


@pytest.mark.timeout(240)
@pytest.mark.parametrize("name", SCENARIOS)
def test_fault_scenario(name, tmp_path):
    row, proc = run_scenario(name, tmp_path)
    failed = [f"{c['name']}: {c['detail']}" for c in row["checks"] if not c["ok"]]
    summary = (f"{name} on {ENGINE}: {row['tasks']} tasks, {row['faults']}; lost {row['lost']}, "
               f"ran twice {row['ran_twice']}, completed twice {row['completed_twice']}, "
               f"stuck {row['stuck']}")
    assert not failed, summary + "\n" + "\n".join(failed) + "\n" + proc.stderr[-2000:]
    assert (row["lost"], row["stuck"], row["completed_twice"]) == (0, 0, 0), summary
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_the_ledger_tells_a_stale_result_from_a_workflow_step_that_ran_twice(tmp_path):
    """A record task returns its run, so a recorded run that is not its newest is a late
    result that overwrote a newer one; a workflow step returns what it computed, so its
    running twice (at least once, as every task) is not "completed twice". The check
    counted such a step once in CI (chords, SQLite: "late results recorded: [754, 755]")."""
    from bench.faults import Harness

    rows = [(1, "SUCCESSFUL", '"100.2"'), (2, "SUCCESSFUL", '"100.1"'), (3, "SUCCESSFUL", "2")]
    runs = {1: [(1, "100.1"), (2, "100.2")], 2: [(1, "100.1"), (2, "100.3")],
            3: [(1, "100.4"), (2, "100.5")]}
    harness = Harness("sqlite", tmp_path, quick=True)
    harness.ledger = lambda: runs
    harness.q = lambda sql, *args, **kwargs: rows if "FROM offload_task" in sql else [(3,)]
    found = harness.verify(good=[1, 2, 3])
    assert found["_stale_ids"] == [2] and found["completed_twice"] == 1
    assert found["ran_twice"] == 3 and found["lost"] == 0
