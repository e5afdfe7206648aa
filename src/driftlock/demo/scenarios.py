"""The demo's traffic: a shop's ordinary requests, and labelled anomaly episodes mixed into them.

A plan is a list of phases. A normal phase is ordinary browsing; an episode phase is one kind of
trouble mixed with ordinary traffic (a scanner, injection probes, credential stuffing, a never-seen
endpoint), or ordinary traffic while the shop itself misbehaves (``fault``: a burst of server errors,
a latency spike). The demo sends a plan over HTTP to a real server; ``benchmarks/quality.py`` runs
the same plans through the Django test client. Seeded: equal seeds give equal plans.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field

__all__ = ["EXCLUDED", "KINDS", "Phase", "Request", "plan"]

KINDS = ("scanner", "sql_injection", "error_burst", "latency_spike", "credential_stuffing", "new_endpoint")
"""Every kind of episode, in the order a plan uses them."""

FAULTS = {"error_burst": "error", "latency_spike": "slow"}
EXCLUDED = ("/admin/", "/health/")
"""The shop's EXCLUDE_PATHS: requests there are not traced, so they are not events."""

_PRODUCTS = range(1, 41)
_SEARCHES = ["shoes", "red shirt", "lamp", "desk", "coffee mug", "socks", "backpack", "rain jacket", "kettle"]
_USERS = ["ana", "ben", "chloe", "dev", "eli", "fay"]
_SCANNER_PATHS = [
    "/wp-login.php", "/.env", "/wp-admin/setup-config.php", "/phpmyadmin/index.php", "/.git/config",
    "/cgi-bin/luci", "/xmlrpc.php", "/vendor/phpunit/phpunit/src/Util/PHP/eval-stdin.php", "/admin.php",
    "/config.json", "/.aws/credentials", "/server-status", "/actuator/env", "/backup.sql",
]  # fmt: skip
_INJECTIONS = [
    "' OR '1'='1", "1; DROP TABLE products--", "' UNION SELECT username, password FROM auth_user--",
    "shoes' AND SLEEP(5)--", "\" OR \"\"=\"", "1' ORDER BY 10--", "<script>alert(1)</script>",
    "../../../../etc/passwd", "'; EXEC xp_cmdshell('dir')--",
]  # fmt: skip


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    data: dict[str, str] | None = None
    kind: str | None = None  # the episode this request belongs to; None for ordinary traffic


@dataclass(frozen=True)
class Phase:
    kind: str | None
    requests: tuple[Request, ...]
    fault: str | None = None  # what the shop suffers during the phase: "error" or "slow"

    @property
    def labelled(self) -> bool:
        return self.kind is not None


WEIGHTS = {"home": 12, "list": 14, "product": 30, "search": 14, "cart": 8, "add": 8, "login": 5, "checkout": 4,
           "health": 5}  # fmt: skip


@dataclass
class Traffic:
    """Ordinary shoppers: mostly browsing, some searching, a few carts, logins and checkouts."""

    rng: random.Random
    weights: dict[str, int] = field(default_factory=lambda: dict(WEIGHTS))

    def request(self) -> Request:
        action = self.rng.choices(list(self.weights), list(self.weights.values()))[0]
        rng = self.rng
        if action == "home":
            return Request("GET", "/")
        if action == "list":
            return Request("GET", "/products/" + rng.choice(["", "?page=2", "?sort=price"]))
        if action == "product":
            return Request("GET", f"/products/{rng.choice(_PRODUCTS)}/")
        if action == "search":
            return Request("GET", "/search/?q=" + rng.choice(_SEARCHES).replace(" ", "+"))
        if action == "cart":
            return Request("GET", "/cart/")
        if action == "add":
            return Request("POST", "/cart/add/", {"product": str(rng.choice(_PRODUCTS)), "quantity": "1"})
        if action == "login":
            user = rng.choice(_USERS)
            password = user + "-secret" if rng.random() > 0.08 else "typo"  # people mistype, now and then
            return Request("POST", "/login/", {"username": user, "password": password})
        if action == "checkout":
            return Request("GET", "/checkout/")
        return Request("GET", "/health/")


def episode_request(kind: str, rng: random.Random) -> Request:
    if kind == "scanner":
        return Request("GET", rng.choice(_SCANNER_PATHS), kind=kind)
    if kind == "sql_injection":
        from urllib.parse import quote_plus

        return Request("GET", "/search/?q=" + quote_plus(rng.choice(_INJECTIONS)), kind=kind)
    if kind == "credential_stuffing":
        user = rng.choice(["admin", "root", "support", "test", "info"]) + str(rng.randrange(100))
        return Request("POST", "/login/", {"username": user, "password": "P@ssw0rd" + str(rng.randrange(1000))}, kind)
    if kind == "new_endpoint":
        return Request("GET", rng.choice(["/api/v2/export/", "/api/v2/export/?format=csv"]), kind=kind)
    raise ValueError(f"unknown episode kind {kind!r}; expected one of {', '.join(KINDS)}")


def plan(
    seed: int,
    *,
    warmup: int = 600,
    gap: int = 200,
    episode: int = 40,
    share: float = 0.5,
    kinds: tuple[str, ...] = KINDS,
    rounds: int = 1,
) -> list[Phase]:
    """Warm-up traffic, then for each round and kind: ``gap`` ordinary requests and an episode of
    ``episode`` requests, ``share`` of them the episode's own (all of them, for shop faults)."""
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise ValueError(f"unknown episode kind {unknown[0]!r}; expected one of {', '.join(KINDS)}")
    rng = random.Random(seed)
    shoppers = Traffic(random.Random(rng.random()))
    phases = [Phase(None, tuple(shoppers.request() for _ in range(warmup)))]
    for _ in range(rounds):
        order = list(kinds)
        rng.shuffle(order)
        for kind in order:
            phases.append(Phase(None, tuple(shoppers.request() for _ in range(gap))))
            if kind in FAULTS:
                burst = tuple(_label(shoppers.request(), kind) for _ in range(episode // 2))
                phases.append(Phase(kind, burst, fault=FAULTS[kind]))
            else:
                mixed = tuple(
                    episode_request(kind, rng) if rng.random() < share else shoppers.request() for _ in range(episode)
                )
                phases.append(Phase(kind, mixed))
    phases.append(Phase(None, tuple(shoppers.request() for _ in range(gap))))
    return phases


def _label(request: Request, kind: str) -> Request:
    return Request(request.method, request.path, request.data, kind)


def is_event(request: Request) -> bool:
    """Whether the request becomes a Driftlock event (excluded paths do not)."""
    return not request.path.startswith(EXCLUDED)


def episodes(phases: list[Phase]) -> Iterator[tuple[str, int, int]]:
    """(kind, first event index, last event index) of every labelled phase."""
    index = 0
    for phase in phases:
        count = sum(1 for r in phase.requests if is_event(r))
        if phase.kind is not None and count:
            yield phase.kind, index, index + count - 1
        index += count
