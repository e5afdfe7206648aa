"""The integration page, line by line, in a real Django project served by real servers."""

from __future__ import annotations

import random
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.django_support import PROJECT, DjangoServer, migrate
from tests.support import FaultServer, Reply, ServerProcess, clean_env, free_port_url, running_server, wait_for


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "shop.sqlite3"
    migrate(path)
    return path


def events(srv: ServerProcess, stream: str = "django-app") -> list[dict[str, object]]:
    response = srv.get(f"/v1/streams/{stream}/events", params={"limit": 2000})
    return response.json()["events"] if response.status_code == 200 else []


def bodies(srv: ServerProcess, stream: str = "django-app") -> list[dict[str, object]]:
    return [e["body"] for e in events(srv, stream)]  # type: ignore[misc]


def test_events_carry_route_status_method_user_and_context(db: Path) -> None:
    with running_server() as srv:
        with DjangoServer("gunicorn", driftlock_url=srv.url, db=db) as web:
            session = httpx.Client(base_url=web.url, timeout=30)
            assert session.get("/products/7/").status_code == 200
            assert session.get("/login-as/ana/").status_code == 200
            assert session.get("/context/").json() == {"ok": True}
            assert session.get("/no-such-page/123/").status_code == 404
            assert session.get("/boom/").status_code == 500
            for excluded in ("/health/", "/health/deep/", "/admin/login/"):
                assert session.get(excluded).status_code == 200
            assert session.get("/api/health/").status_code == 200  # not excluded: prefixes are anchored
            wait_for(lambda: len(bodies(srv)) >= 6, timeout=20, message="6 events")
        got = bodies(srv)
    # two workers export on their own schedules: compare without order
    assert sorted((b["method"], b["route"], b["status"]) for b in got) == sorted(
        [
            ("GET", "products/<int:pk>/", 200),
            ("GET", "login-as/<str:username>/", 200),
            ("GET", "context/", 200),
            ("GET", "/no-such-page/{int}/", 404),
            ("GET", "boom/", 500),
            ("GET", "api/health/", 200),
        ]
    )
    by_route = {b["route"]: b for b in got}
    assert by_route["products/<int:pk>/"]["user"] == "anonymous"
    assert by_route["context/"]["user"] == "authenticated" and "user_id" not in by_route["context/"]
    assert by_route["context/"]["context"] == {"ip_address": "<IP>", "user_tier": "gold"}  # the engine tokenizes IPs
    assert by_route["boom/"]["error"] == "RuntimeError"


@pytest.mark.parametrize("preload", [False, True], ids=["no-preload", "preload"])
def test_gunicorn_two_workers_one_event_per_request(db: Path, preload: bool) -> None:
    args = ("--preload",) if preload else ()
    with running_server() as srv:
        with DjangoServer("gunicorn", driftlock_url=srv.url, db=db, args=args) as web:
            with httpx.Client(base_url=web.url, timeout=30) as http:
                for i in range(40):
                    assert http.get(f"/products/{i}/").status_code == 200
        # the workers flushed at shutdown: every request is there, once
        assert len(events(srv)) == 40


def test_uvicorn_asgi_async_view_one_event_per_request(db: Path) -> None:
    with running_server() as srv:
        with DjangoServer("uvicorn", driftlock_url=srv.url, db=db) as web:
            with httpx.Client(base_url=web.url, timeout=30) as http:
                for _ in range(12):
                    assert http.get("/async/").json() == {"status": "ok"}
                assert http.get("/products/3/").status_code == 200
                assert http.get("/health/").status_code == 200
            wait_for(lambda: len(events(srv)) >= 13, timeout=20, message="13 events")
        got = bodies(srv)
    assert len(got) == 13
    assert got[0]["route"] == "async/" and got[0]["duration"] in ("<250ms", "<500ms")
    assert got[0]["user"] == "anonymous"  # resolved with auser() on the event loop
    assert got[-1]["route"] == "products/<int:pk>/"


NORMAL_AMOUNTS = ["12.50", "9.99", "49.00", "23.75", "5.00", "15.20", "30.00", "8.45", "64.10", "19.99"]


def test_process_payment_403_on_anomaly_200_otherwise(db: Path) -> None:
    # Per-payment checks need a window that one event can stand out in (10 events, a detection per event),
    # and the threshold as given: one odd event in 10 cannot reach p much below 10 / the pool.
    override = '{"baseline_size": 400, "window_size": 10, "hop_size": 1, "p_value_threshold": 0.05}'
    with running_server() as srv:
        with DjangoServer("gunicorn", driftlock_url=srv.url, db=db, DRIFTLOCK_CONFIG_OVERRIDE=override) as web:
            rng = random.Random(3)
            with httpx.Client(base_url=web.url, timeout=30) as http:
                for _ in range(420):
                    response = http.post("/payment/", data={"amount": rng.choice(NORMAL_AMOUNTS)})
                    assert response.status_code in (200, 403)
                normal = http.post("/payment/", data={"amount": "23.75"})
                assert normal.status_code == 200 and normal.json() == {"status": "processed"}
                odd = http.post("/payment/", data={"amount": "' OR 1=1; DROP TABLE payments;--"})
                assert odd.status_code == 403 and odd.json() == {"error": "Suspicious activity detected"}
        assert srv.get("/v1/streams/payments").json()["events_ingested"] == 422


def test_async_mode_true_does_not_wait_for_a_slow_api(db: Path) -> None:
    with FaultServer(default=Reply(delay=5)) as slow, DjangoServer("gunicorn", driftlock_url=slow.url, db=db) as web:
        with httpx.Client(base_url=web.url, timeout=30) as http:
            http.get("/products/1/")
            timings = []
            for i in range(10):
                started = time.perf_counter()
                assert http.get(f"/products/{i}/").status_code == 200
                timings.append(time.perf_counter() - started)
    assert max(timings) < 0.5, timings  # the API answers after 5 s; requests do not wait for it


def test_async_mode_false_exports_before_the_response(db: Path) -> None:
    with (
        running_server() as srv,
        DjangoServer("gunicorn", driftlock_url=srv.url, db=db, settings="shop.settings_sync") as web,
    ):
        with httpx.Client(base_url=web.url, timeout=30) as http:
            for i in range(1, 4):
                assert http.get(f"/products/{i}/").status_code == 200
                assert len(events(srv)) == i  # already on the server when the response arrived


def test_signal_reaches_django_code(db: Path) -> None:
    override = '{"baseline_size": 40, "window_size": 10, "hop_size": 5}'
    with running_server() as srv:
        with DjangoServer(
            "gunicorn",
            driftlock_url=srv.url,
            db=db,
            settings="shop.settings_sync",
            args=("--workers", "1"),
            DRIFTLOCK_CONFIG_OVERRIDE=override,
            DRIFTLOCK_CONFIRMATIONS="1",  # tiny windows: one anomalous detection is the whole incident
        ) as web:
            with httpx.Client(base_url=web.url, timeout=30) as http:
                for i in range(60):
                    http.get(f"/products/{i % 5}/")
                for path in ("/wp-login.php", "/.env", "/.git/config", "/xmlrpc.php", "/phpmyadmin/") * 2:
                    http.get(path)
                seen = http.get("/signals/").json()["anomalies"]
        assert seen and seen[0]["stream"] == "django-app"
        detections = srv.get("/v1/anomalies", params={"stream_id": "django-app"}).json()["total"]
        assert 1 <= len(seen) <= detections  # a signal per incident, never more than the detections


def test_opentelemetry_instrument_with_the_middleware_listed_gives_one_span_per_request(db: Path) -> None:
    with running_server() as srv:
        with DjangoServer("gunicorn", driftlock_url=srv.url, db=db, instrument=True) as web:
            with httpx.Client(base_url=web.url, timeout=30) as http:
                for i in range(10):
                    assert http.get(f"/products/{i}/").status_code == 200
        got = bodies(srv)
    assert len(got) == 10 and {b["route"] for b in got} == {"products/<int:pk>/"}


def test_instrumentation_disabled_by_environment_is_quiet(db: Path) -> None:
    with running_server() as srv:
        with DjangoServer("gunicorn", driftlock_url=srv.url, db=db, OTEL_PYTHON_DJANGO_INSTRUMENT="False") as web:
            assert web.get("/products/1/").status_code == 200
            assert web.get("/context/").status_code == 500  # anonymous user has no profile: the view's own error
        assert events(srv) == []
        assert not [line for line in web.output if "Traceback" in line and "driftlock" in line]


def test_app_instruments_at_startup_and_middleware_steps_aside(db: Path) -> None:
    with running_server() as srv:
        with DjangoServer("gunicorn", driftlock_url=srv.url, db=db, settings="shop.settings_app") as web:
            for i in range(5):
                assert web.get(f"/products/{i}/").status_code == 200
        assert len(events(srv)) == 5


def manage(*args: str, settings: str = "shop.settings", **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=120,
        env=clean_env(DJANGO_SETTINGS_MODULE=settings, **env),
    )


def test_system_checks_report_mistakes() -> None:
    result = manage("check", "--tag", "driftlock", settings="shop.settings_bad")
    assert result.returncode != 0
    assert "driftlock.E001" in result.stderr and "'STREM_ID'" in result.stderr and "STREAM_ID" in result.stderr
    assert "driftlock.E002" in result.stderr
    clean = manage("check", settings="shop.settings_app")
    assert clean.returncode == 0 and "driftlock." not in clean.stderr
    slow = manage("check", settings="shop.settings_slow")
    assert "driftlock.W001" not in slow.stderr  # the app is not installed there: no checks registered
    with_app = subprocess.run(
        [
            sys.executable,
            "-c",
            "import django, os; os.environ['DJANGO_SETTINGS_MODULE']='shop.settings_sync';"
            "from django.conf import settings; settings.INSTALLED_APPS; settings.DEBUG=False;"
            "settings.INSTALLED_APPS = [*settings.INSTALLED_APPS, 'driftlock.django']; django.setup();"
            "from django.core.management import call_command; call_command('check')",
        ],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=120,
        env=clean_env(PYTHONPATH=str(PROJECT)),
    )
    assert "driftlock.W001" in with_app.stderr


def test_management_command_reports_in_plain_words() -> None:
    with running_server() as srv:
        ok = manage("driftlock", "check", settings="shop.settings_app", DRIFTLOCK_BASE_URL=srv.url)
    assert ok.returncode == 0, ok.stderr
    assert "API key: set" in ok.stdout and "your-api-key" not in ok.stdout
    assert "Connectivity: reached Driftlock" in ok.stdout and "Authentication: accepted" in ok.stdout
    down = manage("driftlock", "check", settings="shop.settings_app", DRIFTLOCK_BASE_URL=free_port_url())
    assert down.returncode == 1 and "Connectivity: could not reach Driftlock" in down.stderr
    with running_server(":memory:", "--api-key", "another-key-0123456789") as srv:
        refused = manage("driftlock", "check", settings="shop.settings_app", DRIFTLOCK_BASE_URL=srv.url)
    assert refused.returncode == 1 and "Authentication: the API refused the key" in refused.stderr


def test_private_middleware_class_has_the_shape_we_rely_on() -> None:
    """Fails loudly when opentelemetry-instrumentation-django changes what DriftlockMiddleware subclasses."""
    from opentelemetry.instrumentation.django import DjangoInstrumentor
    from opentelemetry.instrumentation.django.middleware import otel_middleware

    cls = otel_middleware._DjangoMiddleware
    for name in ("_tracer", "_otel_request_hook", "_otel_response_hook", "_excluded_urls", "_environ_span_key"):
        assert hasattr(cls, name), name
    for method in ("process_request", "process_view", "process_exception", "process_response", "__call__"):
        assert callable(getattr(cls, method)), method
    assert DjangoInstrumentor._opentelemetry_middleware == (
        "opentelemetry.instrumentation.django.middleware.otel_middleware._DjangoMiddleware"
    )
    from driftlock.django.conf import OTEL_MIDDLEWARE

    assert DjangoInstrumentor._opentelemetry_middleware == OTEL_MIDDLEWARE
    assert otel_middleware._is_asgi_supported, "install opentelemetry-instrumentation-django[asgi]"


def test_middleware_placed_after_answering_middleware_is_said_once_with_the_fix() -> None:
    from driftlock.django.checks import hidden_answers

    page = [
        "django.middleware.common.CommonMiddleware",
        "django.middleware.csrf.CsrfViewMiddleware",
        "django.contrib.auth.middleware.AuthenticationMiddleware",
        "driftlock.django.DriftlockMiddleware",
    ]
    problem = hidden_answers(page, ["shop"])
    assert problem and "APPEND_SLASH" in problem and "CSRF" in problem and "INSTALLED_APPS" in problem
    assert hidden_answers(page, ["shop", "driftlock.django"]) is None  # the span then wraps every middleware
    assert hidden_answers(page[2:], ["shop"]) is None


def test_a_request_rejected_before_the_view_keeps_its_route_and_the_position_is_said_at_start(db: Path) -> None:
    with running_server() as srv:
        with DjangoServer("gunicorn", driftlock_url=srv.url, db=db, settings="shop.settings_csrf") as web:
            assert web.post("/payment/", data={"amount": "10"}).status_code == 403  # CSRF: no token
            wait_for(lambda: bodies(srv), timeout=20, message="the rejected request's event")
            said = [line for line in web.output if "driftlock.W003" in line]
        got = bodies(srv)
    assert [(b["method"], b["route"], b["status"]) for b in got] == [("POST", "payment/", 403)]
    assert said and "CsrfViewMiddleware" in said[0] and "INSTALLED_APPS" in said[0]
