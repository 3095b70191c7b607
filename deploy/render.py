"""Write the deployment kit from the roles declared in the Back Office's settings.

Each role's drain budget is declared once — ``OFFLOAD_PROFILES[...]["grace"]`` for the
async profiles, ``OFFLOAD_WEB_GRACE`` for the web role — and this script derives every
platform's kill timeout from it: compose ``stop_grace_period``, Kubernetes
``terminationGracePeriodSeconds`` (plus the web role's ``preStop`` pause), and the
server's own grace (which reads the same setting). Run it after changing a role;
``tests/test_deploy.py`` fails when the committed files differ from its output::

    .venv/bin/python deploy/render.py            # rewrites deploy/compose.yaml, deploy/k8s/*.yaml
    .venv/bin/python deploy/render.py --check    # exit 1 if they are out of date
"""

import argparse
import os
import sys
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
#: Time a process gets beyond its drain budget to exit before the platform kills it.
EXIT_MARGIN = 10
#: The web role pauses this long in preStop so the load balancer stops sending traffic first.
WEB_PRESTOP = 5
IMAGE = "${OFFLOAD_IMAGE:-ghcr.io/offload/backoffice:latest}"
K8S_IMAGE = "ghcr.io/offload/backoffice@sha256:IMAGE_DIGEST"  # the pipeline sets the digest


def roles():
    """``{role: drain_seconds}`` from the settings: web plus every async profile."""
    sys.path.insert(0, str(ROOT / "backoffice"))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "backoffice.settings")
    import django

    django.setup()
    from django.conf import settings

    from offload.roles import profiles

    result = {"web": float(settings.OFFLOAD_WEB_GRACE)}
    result.update({name: p.grace for name, p in profiles().items()})
    return result


def seconds(value):
    return int(value) if float(value).is_integer() else value


def compose(budgets):
    env = {"DATABASE_URL": "postgres://offload:offload@postgres:5432/offload",
           "DJANGO_SECRET_KEY": "${DJANGO_SECRET_KEY:?set DJANGO_SECRET_KEY}",
           "DJANGO_ALLOWED_HOSTS": "${DJANGO_ALLOWED_HOSTS:-localhost}",
           "DJANGO_DEBUG": "0", "OFFLOAD_RELEASE": "${OFFLOAD_RELEASE:?set OFFLOAD_RELEASE}",
           # Links in the applicants' emails (sent by the async servers) point here.
           "LOANS_PUBLIC_URL": "${LOANS_PUBLIC_URL:-http://localhost:8000}"}
    services = {
        "postgres": {
            "image": "postgres:17", "environment": {"POSTGRES_USER": "offload",
                                                    "POSTGRES_PASSWORD": "offload", "POSTGRES_DB": "offload"},
            "volumes": ["pgdata:/var/lib/postgresql/data"],
            "healthcheck": {"test": ["CMD", "pg_isready", "-U", "offload"], "interval": "2s",
                            "retries": 30},
        },
        # The release step: migrations, once, before any server of this release starts.
        "release": {"image": IMAGE, "command": ["release"], "environment": dict(env),
                    "depends_on": {"postgres": {"condition": "service_healthy"}}},
        "lb": {"image": "nginx:1.29-alpine", "ports": ["8000:80"],
               "volumes": ["./nginx.conf:/etc/nginx/conf.d/default.conf:ro"],
               "depends_on": {"web1": {"condition": "service_healthy"},
                              "web2": {"condition": "service_healthy"}}},
    }
    probes = {
        "web": ["CMD", "python", "-c",
                "import urllib.request as u; u.urlopen('http://127.0.0.1:8000/readyz', timeout=2)"],
        "async": ["CMD", "python", "manage.py", "offload", "health"],
    }
    layout = [("web1", "web"), ("web2", "web"), ("async1", "async"), ("async2", "async"),
              ("async-bulk", "async-bulk")]
    for name, role in layout:
        role_env = dict(env, OFFLOAD_ROLE=role)
        if role == "web":
            role_env["OFFLOAD_WEB_BIND"] = "0.0.0.0:8000"
        services[name] = {
            "image": IMAGE, "environment": role_env,
            "stop_grace_period": f"{seconds(budgets[role] + EXIT_MARGIN)}s",
            "healthcheck": {"test": probes["web" if role == "web" else "async"],
                            "interval": "5s", "retries": 6},
            "depends_on": {"release": {"condition": "service_completed_successfully"}},
        }
    return {"name": "offload", "services": services, "volumes": {"pgdata": {}}}


def k8s(budgets):
    docs = []
    for role, budget in budgets.items():
        web = role == "web"
        container = {
            "name": "app", "image": K8S_IMAGE,
            "env": [{"name": "OFFLOAD_ROLE", "value": role}] + (
                [{"name": "OFFLOAD_WEB_BIND", "value": "0.0.0.0:8000"}] if web else []),
            "envFrom": [{"secretRef": {"name": "offload-env"}}],
            "securityContext": {"runAsNonRoot": True, "allowPrivilegeEscalation": False},
        }
        if web:
            container["ports"] = [{"containerPort": 8000, "name": "http"}]
            container["livenessProbe"] = {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 10}
            container["readinessProbe"] = {"httpGet": {"path": "/readyz", "port": "http"}, "periodSeconds": 5}
            container["lifecycle"] = {"preStop": {"sleep": {"seconds": WEB_PRESTOP}}}
        else:
            probe = {"exec": {"command": ["python", "manage.py", "offload", "health"]}, "periodSeconds": 15}
            container["livenessProbe"] = probe
        grace = budget + EXIT_MARGIN + (WEB_PRESTOP if web else 0)
        docs.append({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": f"offload-{role}", "labels": {"app": "offload", "role": role}},
            "spec": {
                "replicas": 2 if role in ("web", "async") else 1,
                "selector": {"matchLabels": {"app": "offload", "role": role}},
                "template": {
                    "metadata": {"labels": {"app": "offload", "role": role}},
                    "spec": {"terminationGracePeriodSeconds": seconds(grace),
                             "containers": [container]},
                },
            },
        })
    docs.append({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "offload-web"},
                 "spec": {"selector": {"app": "offload", "role": "web"},
                          "ports": [{"port": 80, "targetPort": "http"}]}})
    docs.append({
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "offload-release"},
        "spec": {"backoffLimit": 0, "template": {"spec": {"restartPolicy": "Never", "containers": [{
            "name": "release", "image": K8S_IMAGE, "args": ["release"],
            "envFrom": [{"secretRef": {"name": "offload-env"}}]}]}}},
    })
    # Queue-depth autoscaling for the async role (KEDA's PostgreSQL scaler).
    docs.append({
        "apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
        "metadata": {"name": "offload-async"},
        "spec": {"scaleTargetRef": {"name": "offload-async"}, "minReplicaCount": 2,
                 "maxReplicaCount": 10, "triggers": [{
                     "type": "postgresql",
                     "metadata": {"query": "SELECT count(*) FROM offload_task WHERE status = 'READY' "
                                           "AND available_at <= now()",
                                  "targetQueryValue": "500", "connectionFromEnv": "DATABASE_URL"}}]},
    })
    return docs


def render():
    budgets = roles()
    header = "# Generated by deploy/render.py from the roles in backoffice/settings.py: edit those, then re-run.\n"
    files = {HERE / "compose.yaml": header + yaml.safe_dump(compose(budgets), sort_keys=False),
             HERE / "k8s" / "offload.yaml": header + yaml.safe_dump_all(k8s(budgets), sort_keys=False)}
    return files


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true")
    parser.add_argument("--budgets", action="store_true", help="print each role's drain budget as JSON")
    args = parser.parse_args()
    if args.budgets:
        import json

        print(json.dumps(roles()))
        return
    stale = []
    for path, text in render().items():
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(str(path.relative_to(ROOT)))
        else:
            path.write_text(text)
    if stale:
        sys.exit(f"out of date (run deploy/render.py): {', '.join(stale)}")


if __name__ == "__main__":
    main()
