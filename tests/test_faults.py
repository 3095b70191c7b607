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
