# Two entry points: `make run` (the Back Office, web + async on SQLite) and `make test`.
VENV := .venv
PY := $(VENV)/bin/python
# What running needs (requirements.lock); make test adds the test and lint tools.
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev

.PHONY: run test venv image bench bench-priority bench-isolation faults clean

$(STAMP): requirements.lock pyproject.toml
	@test -x $(PY) || $$(scripts/find-python) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.lock
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -e .
	@touch $(STAMP)

$(DEV_STAMP): $(STAMP) requirements-dev.lock tools/package-lock.json
	$(PY) -m pip install -q --disable-pip-version-check -r requirements-dev.lock
	@if command -v npm >/dev/null; then cd tools && npm ci --silent --no-audit --no-fund; \
	else echo "npm not found: the workflow lint test will be skipped (required under CI=true)"; fi
	@touch $(DEV_STAMP)

venv: $(DEV_STAMP)

run: $(STAMP)
	cd backoffice && ../$(PY) manage.py offload release && ../$(PY) manage.py collectstatic --noinput -v0 \
		&& ../$(PY) manage.py seed_demo --if-empty && exec ../$(PY) manage.py offload run

# The whole suite: once on an SQLite file, once on PostgreSQL.
# Outside CI the PostgreSQL half is skipped (with a notice) when no server answers;
# under CI=true it is required.
test: $(DEV_STAMP)
	scripts/run-tests

# The one image of every role, with docker, podman or buildah (IMAGE, BASE, BUILDER:
# see deploy/build-image; docs/deployment.md).
image:
	deploy/build-image

bench: $(STAMP)
	$(PY) bench/run.py

bench-priority: $(STAMP)
	$(PY) bench/priority.py --peers

# Web latency idle / split roles / monolith (the Back Office under locust); see docs/backoffice.md.
bench-isolation: $(STAMP)
	$(PY) bench/isolation.py --db both --pin-postgres --chart docs/isolation.png

# Real-process fault scenarios on SQLite and a private PostgreSQL cluster; writes the
# table to docs/reliability.md. FAULTS_ARGS=--quick for the CI sizes (see bench/faults.py).
faults: $(STAMP)
	FAULTS_MAKE=1 FAULTS_ARGS="$(FAULTS_ARGS)" $(PY) bench/faults.py --write docs/reliability.md $(FAULTS_ARGS)

clean:
	rm -rf $(VENV) var backoffice/var backoffice/static-collected
