"""Seeded synthetic traffic for engine and server tests: HTTP events as the exporter makes them."""

from __future__ import annotations

import random
from typing import Any

ROUTES = [
    ("GET", "", 200), ("GET", "products/", 200), ("GET", "products/<int:product_id>/", 200),
    ("GET", "search/", 200), ("POST", "cart/add/", 302), ("GET", "cart/", 200), ("POST", "login/", 302),
    ("GET", "checkout/", 200), ("GET", "static/<path:path>", 200),
]  # fmt: skip
DURATIONS = ["<25ms", "<50ms", "<100ms", "<250ms"]
SCANNER_PATHS = ["/wp-login.php", "/.env", "/wp-admin/setup-config.php", "/phpmyadmin/index.php",
                 "/.git/config", "/cgi-bin/luci", "/xmlrpc.php", "/vendor/phpunit/eval-stdin.php"]  # fmt: skip
INJECTIONS = ["' OR '1'='1", "1; DROP TABLE users--", "' UNION SELECT username, password FROM auth_user--",
              "admin'--", "1' AND SLEEP(5)--", "\" OR \"\"=\""]  # fmt: skip


def normal(rng: random.Random) -> dict[str, Any]:
    method, route, status = rng.choice(ROUTES)
    if rng.random() < 0.03:
        status = 404
    body: dict[str, Any] = {
        "kind": "http",
        "method": method,
        "route": route,
        "status": status,
        "duration": rng.choice(DURATIONS),
        "user": rng.choice(["anonymous", "authenticated"]),
    }
    if route == "search/":
        body["query"] = {"q": rng.choice(["shoes", "red shirt", "lamp", "desk", "mug", "socks"])}
    return {"type": "trace", "body": body, "attributes": {"service": "shop"}}


def scanner(rng: random.Random) -> dict[str, Any]:
    return {
        "type": "trace",
        "attributes": {"service": "shop"},
        "body": {
            "kind": "http",
            "method": "GET",
            "route": rng.choice(SCANNER_PATHS),
            "status": 404,
            "duration": "<25ms",
            "user": "anonymous",
        },
    }


def injection(rng: random.Random) -> dict[str, Any]:
    return {
        "type": "trace",
        "attributes": {"service": "shop"},
        "body": {
            "kind": "http",
            "method": "GET",
            "route": "search/",
            "status": 200,
            "duration": "<50ms",
            "user": "anonymous",
            "query": {"q": rng.choice(INJECTIONS)},
        },
    }


def events(n: int, seed: int = 1) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [normal(rng) for _ in range(n)]
