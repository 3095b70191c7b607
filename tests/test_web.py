"""The web role's WSGI application (``offload.web``): probes and static files without
any middleware in the project, called as gunicorn calls it."""

import json
from io import BytesIO

import pytest

from offload import web


def call(app, path):
    """``(status, body)`` of a GET through the WSGI interface."""
    seen = {}

    def start_response(status, headers):
        seen["status"] = status

    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": path, "SERVER_NAME": "testserver",
               "SERVER_PORT": "80", "wsgi.input": BytesIO(), "wsgi.url_scheme": "http",
               "QUERY_STRING": "", "HTTP_HOST": "probe.internal"}
    body = b"".join(app(environ, start_response))
    return int(seen["status"].split()[0]), body


def project(environ, start_response):
    start_response("299 Project", [("Content-Type", "text/plain")])
    return [b"the project"]


@pytest.fixture
def no_middleware(settings):
    settings.MIDDLEWARE = [m for m in settings.MIDDLEWARE if "health" not in m]
    settings.STATIC_ROOT = None
    return settings


@pytest.mark.django_db(transaction=True)
def test_probes_answer_before_the_project(no_middleware):
    app = web.Probes(project)
    assert call(app, "/healthz") == (200, b"ok\n")
    status, body = call(app, "/readyz")
    assert status == 200 and json.loads(body) == {"ready": True, "reason": "ok"}
    assert call(app, "/anything") == (299, b"the project")


def test_static_files_come_from_the_apps_without_collectstatic(no_middleware):
    status, body = call(web.static_files(project), "/static/admin/css/base.css")
    assert status == 200 and b"{" in body
    assert call(web.static_files(project), "/static/nothing.css")[0] == 299


def test_static_files_come_from_static_root_once_collected(no_middleware, tmp_path):
    (tmp_path / "app.css").write_text("body{}")
    no_middleware.STATIC_ROOT = str(tmp_path)
    assert call(web.static_files(project), "/static/app.css") == (200, b"body{}")
    # Only what was collected: the apps' folders are not searched any more.
    assert call(web.static_files(project), "/static/admin/css/base.css")[0] == 299


def test_a_project_with_its_own_whitenoise_or_a_cdn_keeps_it(no_middleware):
    no_middleware.MIDDLEWARE = ["whitenoise.middleware.WhiteNoiseMiddleware"]
    assert web.static_files(project) is project
    no_middleware.MIDDLEWARE = []
    no_middleware.STATIC_URL = "https://cdn.example.com/static/"
    assert web.static_files(project) is project
