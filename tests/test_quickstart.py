"""The README's quick start, followed as a new user would: a freshly built wheel
installed (not editable) in a fresh virtualenv, ``django-admin startproject``, the
README's code blocks applied as they are written, one task run end to end by a real
``offload run``, then ``offload`` taken out of INSTALLED_APPS again.

The blocks to run are marked in README.md with ``<!-- quickstart: ACTION [FILE] -->``:
``run`` (shell commands; ``offload run`` is started in the background, the rest must
succeed), ``append FILE`` / ``write FILE`` (Python for the project), ``shell`` (Python
for ``manage.py shell``). SQLite in the SQLite pass of the suite, PostgreSQL (a database
the test creates and drops) in the PostgreSQL pass.
"""

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import urllib.error
import urllib.request
import uuid

import pytest

from tests.conftest import ROOT, free_port, wait_until

pytestmark = pytest.mark.process
ENGINE = os.environ.get("OFFLOAD_TEST_DB", "sqlite")
BLOCK = re.compile(r"<!-- quickstart: (\w+)(?: (\S+))? -->\n```\w*\n(.*?)```", re.S)


def quickstart_blocks():
    """``[(action, file, code)]`` in README order."""
    return BLOCK.findall((ROOT / "README.md").read_text())


@pytest.fixture(scope="module")
def venv(tmp_path_factory):
    """A fresh virtualenv with the wheel built from this checkout (pins from
    requirements.lock as constraints, so the versions are the tested ones)."""
    root = tmp_path_factory.mktemp("quickstart")
    source, wheels = root / "source", root / "wheels"
    # Built from a copy of what ships, so the build leaves nothing in the checkout.
    shutil.copytree(ROOT / "src", source / "src",
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--wheel-dir",
                    str(wheels), str(source)], check=True, timeout=600)
    [wheel] = wheels.glob("django_offload-*.whl")
    subprocess.run([sys.executable, "-m", "venv", str(root / "venv")], check=True, timeout=120)
    return root / "venv", wheel


def _get(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None


def _pg_database():
    """A new PostgreSQL database (name, settings block, drop function)."""
    from urllib.parse import urlsplit

    import psycopg

    url = urlsplit(os.environ.get("OFFLOAD_TEST_PG_URL", "postgres://postgres@127.0.0.1:5432/offload"))
    name = f"quickstart_{uuid.uuid4().hex[:10]}"
    params = dict(host=url.hostname or "127.0.0.1", port=url.port or 5432,
                  user=url.username or "postgres", password=url.password or "")

    def admin(sql):
        with psycopg.connect(dbname="postgres", autocommit=True, **params) as conn:
            conn.execute(sql)

    admin(f'CREATE DATABASE "{name}"')
    block = ("DATABASES = {'default': {'ENGINE': 'django.db.backends.postgresql', "
             f"'NAME': {name!r}, 'USER': {params['user']!r}, 'PASSWORD': {params['password']!r}, "
             f"'HOST': {params['host']!r}, 'PORT': {params['port']!r}}}}}\n")
    return block, lambda: admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_the_readme_quick_start_works_in_a_fresh_project(venv, tmp_path):
    env_dir, wheel = venv
    bindir = env_dir / "bin"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("DJANGO_", "OFFLOAD_", "PYTHON", "VIRTUAL_ENV"))}
    env["PATH"] = f"{bindir}:{env['PATH']}"
    project = tmp_path / "project"
    project.mkdir()
    drop = None
    if ENGINE == "postgres":
        database, drop = _pg_database()
    run = None
    try:
        def sh(command, **kwargs):
            done = subprocess.run(command, shell=True, cwd=project, env=env, capture_output=True,
                                  text=True, timeout=600, **kwargs)
            assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
            return done

        port = free_port()
        blocks = quickstart_blocks()
        assert [a for a, _, _ in blocks] == ["run", "append", "write", "append", "run", "shell"]
        for number, (action, path, code) in enumerate(blocks):
            if number == 1:  # installed: the user's project (a new one here)
                sh("django-admin startproject mysite .")
                if ENGINE == "postgres":
                    with open(project / "mysite/settings.py", "a") as f:
                        f.write("\n" + database)
            if action in ("append", "write"):
                with open(project / path, "a" if action == "append" else "w") as f:
                    f.write("\n" + code)
                continue
            if action == "shell":
                script = code + (
                    "\nimport time\ndeadline = time.monotonic() + 60\n"
                    "while welcome.get_result(result.id).status != 'SUCCESSFUL' "
                    "and time.monotonic() < deadline:\n    time.sleep(0.05)\n"
                    "print(welcome.get_result(result.id).return_value)\n")
                done = sh(f"python manage.py shell -c {shlex.quote(script)}")
                assert done.stdout.strip().endswith("Welcome, Ada!"), done.stdout + done.stderr
                continue
            for line in code.strip().splitlines():
                if line.startswith("pip install"):
                    # The package under test instead of the index's; the lock's pins.
                    line = line.replace('"django-offload[', f'"{wheel}[') + (
                        f" -q -c {ROOT / 'requirements.lock'}")
                    sh(line)
                elif " offload run" in line:
                    line = line.replace("127.0.0.1:8000", f"127.0.0.1:{port}")
                    run = subprocess.Popen(shlex.split(line), cwd=project, env=env,
                                           stdout=open(tmp_path / "run.log", "w"),
                                           stderr=subprocess.STDOUT, start_new_session=True)
                    base = f"http://127.0.0.1:{port}"
                    wait_until(lambda: run.poll() is not None or _get(f"{base}/healthz") == 200,
                               timeout=60, message="offload run to answer /healthz")
                    assert run.poll() is None, (tmp_path / "run.log").read_text()
                else:
                    sh(line)
        # The web role's promises, with no middleware added and no collectstatic run.
        assert _get(f"{base}/readyz") == 200
        assert _get(f"{base}/static/admin/css/base.css") == 200
        assert _get(f"{base}/metrics") == 403
        assert _get(f"{base}/offload/") == 200  # redirected to the admin's login page
        run.send_signal(signal.SIGTERM)
        assert run.wait(60) == 0, (tmp_path / "run.log").read_text()
        run = None
        # The wheel and its dependencies only: nothing editable, no test or lint tools.
        installed = sh("python -m pip list --format=freeze").stdout.lower().split()
        assert "django-offload==0.1.0" in installed
        assert not [p for p in installed if p.startswith(("pytest", "playwright", "zizmor"))]
        assert sh("python -m pip list --editable --format=freeze").stdout.strip() == ""
        sh("python -m pip check")

        # Taking the app out again: manage.py check names the missing line.
        with open(project / "mysite/settings.py", "a") as f:
            f.write('\nINSTALLED_APPS.remove("offload")\n')
        done = subprocess.run("python manage.py check", shell=True, cwd=project, env=env,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 1, done.stdout + done.stderr
        assert "offload.E003" in done.stderr and "INSTALLED_APPS" in done.stderr, done.stderr
    finally:
        if run is not None and run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait()
        if drop is not None:
            drop()


def test_make_run_installs_only_what_running_needs():
    """make run: requirements.lock and the package; the test runner, Playwright, the
    linters and npm come with make test only."""
    run = subprocess.run(["make", "-n", "-B", "run"], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout
    test = subprocess.run(["make", "-n", "-B", "test"], cwd=ROOT, capture_output=True, text=True,
                          check=True).stdout
    assert "-r requirements.lock" in run and "requirements-dev.lock" not in run and "npm" not in run
    assert "-r requirements-dev.lock" in test and "npm ci" in test
    runtime = (ROOT / "requirements.lock").read_text().lower()
    for tool in ("pytest", "playwright", "zizmor", "hadolint", "check-jsonschema"):
        assert tool not in runtime
