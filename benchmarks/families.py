"""Scenario families for the quality benchmark: seeded, labelled streams of events as they reach ``/v1/detect``.

A family turns a seed and a few knobs into a :class:`LabelledStream`: the events exactly as a client
sends them to ``POST /v1/detect`` (dicts), a simulated timestamp per event (seconds from the start,
Poisson arrivals at the stream's traffic rate), the labelled episodes (kind, first index, last
index) and, per event, whether it is an episode's own (anomalous) event or ordinary traffic.

Families (every episode kind has a meaning in each):

* ``shop-spans``: the demo shop's ordinary traffic and episodes (``driftlock.demo.scenarios``), sent
  in process through the Django test client with the real OpenTelemetry instrumentation and the
  Driftlock hooks; spans become events through ``driftlock.events.span_to_event`` (ours) and, beside
  it, the naive mapping (each span's full attribute set, its name, status and exact duration).
  Scanner: paths that do not exist; SQL injection: payloads in ``/search/?q=``; error burst and
  latency spike: the shop's own faults (``error``, ``slow``) on the episode's requests; credential
  stuffing: failed logins of unknown users; new endpoint: ``/api/v2/export/``.
* ``sdk-logs``: application log records (timestamp, level, logger, host, request id, free-text
  message with paths, ids, exact durations, search terms, client addresses). Scanner: ``Not Found``
  warnings for probe paths from one address; SQL injection: search and query log lines carrying
  payloads; error burst: database and upstream errors; latency spike: the same request lines with
  durations of seconds; credential stuffing: failed logins of many users from a few addresses;
  new endpoint: request lines for a path never logged before.
* ``sdk-api-metrics``: one record per API call, the SDK page's "API metrics" use case (full path with
  ids and query, method, status, exact ``duration_ms``, bytes, client address, user agent, request
  id, timestamp). Scanner: probe paths answered 404 to one tool's user agent; SQL injection:
  payloads in the query string; error burst: 5xx on ordinary calls; latency spike: ordinary calls
  taking seconds; credential stuffing: ``POST /api/login`` answered 401 from a few addresses;
  new endpoint: ``/api/v2/export``.
* ``sdk-security``: authentication and access events, the "Security events" use case (action, user,
  ip, success, attempts, method, user agent, resource, exact ``duration_ms``, event id). Scanner:
  denied access to probe resources from one address; SQL injection: payloads as login user names
  and in accessed resources; error burst: the identity provider failing; latency spike: auth checks
  taking seconds; credential stuffing: failed logins across many users from a few addresses; new
  endpoint: an action never seen (``api_token_created`` with an admin scope).
* ``sdk-transactions``: payments, the "Transaction monitoring" use case (transaction id, exact
  amount, currency, merchant, country, card, channel, status, processing time, customer id, client
  address, free-text description). Scanner: a bot enumerating merchant ids that do not exist;
  SQL injection: payloads in the description and merchant fields; error burst: the processor
  failing; latency spike: processing times of seconds; credential stuffing: card testing (many small
  declined charges across cards from a few addresses); new endpoint: a payment channel and currency
  never seen.
* ``tools``: ``shop-spans`` with the scanner, SQL injection and credential stuffing episodes replayed
  from real tools, recorded against the demo shop served on 127.0.0.1 (``python benchmarks/families.py
  record-tools``, Debian bookworm's dirb 2.22 with its ``small.txt`` word list, sqlmap 1.7.2 at level 2
  on ``/search/?q=``, hydra 9.4 ``http-post-form`` on ``/login/``): what the shop received (method,
  path, query, status, form fields, user agent), in ``benchmarks/data/tools.jsonl``. Each episode
  replays a contiguous run of one tool's requests from a seeded starting point, interleaved with
  ordinary shop traffic. (hydra 9.4 loops on a login that answers 401, thc-hydra issue #974: its
  recording is the loop, stopped at TOOL_TIMEOUTS; the mapping judges method, route and status, not
  the credentials.)

Knobs (:class:`Knobs`; ``None`` draws the value from the seed, so every seed varies them):
``share`` of an episode's events that are its own, the rest ordinary traffic interleaved (1.0 to
0.3, drawn per episode from SHARES); ``length`` of an episode in events (10 to 200, drawn per
episode); ``routes``: distinct endpoints, resources or merchants of the ordinary mix (5 to 300,
drawn per stream; the shop has its own fixed routes); ``rate``: ordinary events per second (0.5 to
200); ``drift``: how far the ordinary mix turns over during the run (0 steady, 1 the most popular
routes trade places with others by the end); ``quiet``: ordinary traffic only.

The split (:data:`TUNED` and :data:`HELD_OUT`, disjoint): TUNED_FAMILIES (``shop-spans``,
``sdk-logs``, ``sdk-api-metrics``) at TUNED_SEEDS (1-100) may be looked at while tuning the engine
or the alarm rule. Everything else is held out and is only ever reported: HELD_OUT_FAMILIES
(``sdk-security``, ``sdk-transactions``, ``tools``) at every seed, and HELD_OUT_SEEDS (101-110) of
every family.
"""

from __future__ import annotations

import math
import os
import random
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

from driftlock._protocol import encode_events
from driftlock.demo import scenarios
from driftlock.demo.scoring import Episode

__all__ = [
    "FAMILIES",
    "HELD_OUT",
    "HELD_OUT_FAMILIES",
    "HELD_OUT_SEEDS",
    "KINDS",
    "SHARES",
    "TUNED",
    "TUNED_FAMILIES",
    "TUNED_SEEDS",
    "Knobs",
    "LabelledStream",
    "generate",
    "is_held_out",
    "is_tuned",
]

KINDS = scenarios.KINDS
SHARES = (1.0, 0.85, 0.7, 0.5, 0.3)
"""Shares of an episode's events that are its own, drawn per episode when ``Knobs.share`` is None."""
LENGTHS = (10, 200)
ROUTES = (5, 300)
RATES = (0.5, 200.0)
EPOCH = 1_772_323_200.0  # 2026-03-01T00:00:00Z: simulated streams start here

TUNED_FAMILIES = ("shop-spans", "sdk-logs", "sdk-api-metrics", "site-cms")
HELD_OUT_FAMILIES = ("sdk-security", "sdk-transactions", "tools", "site-forum")
TUNED_SEEDS = range(1, 101)
HELD_OUT_SEEDS = range(101, 111)


def is_held_out(family: str, seed: int) -> bool:
    return family in HELD_OUT_FAMILIES or seed in HELD_OUT_SEEDS


def is_tuned(family: str, seed: int) -> bool:
    return family in TUNED_FAMILIES and seed in TUNED_SEEDS and not is_held_out(family, seed)


@dataclass(frozen=True)
class Knobs:
    share: float | None = None  # own events' share inside an episode; None: drawn per episode from SHARES
    length: int | None = None  # events per episode; None: drawn per episode, 10..200, log-uniform
    routes: int | None = None  # distinct routes of the ordinary mix; None: drawn per stream, 5..300
    rate: float | None = None  # events per second; None: drawn per stream, 0.5..200, log-uniform
    drift: float | None = None  # 0..1: how far the ordinary mix turns over; None: drawn per stream
    quiet: bool = False  # ordinary traffic only
    kinds: tuple[str, ...] = KINDS
    warmup: int = 600  # ordinary events before the first episode
    gap: int = 200  # ordinary events before each episode, and after the last
    events: int = 3000  # events of a quiet run


@dataclass
class LabelledStream:
    family: str
    seed: int
    events: list[dict[str, Any]]  # as they reach POST /v1/detect
    times: list[float]  # seconds from the stream's start, one per event
    episodes: list[Episode]
    own: list[str | None]  # per event: the kind whose own event it is, None for ordinary traffic
    settings: dict[str, Any]  # the knobs as drawn: routes, rate, drift, and per episode share and length
    naive: list[dict[str, Any]] | None = None  # shop-spans: the same spans through the naive mapping

    @property
    def normal_events(self) -> int:
        return len(self.events) - sum(e.end - e.start + 1 for e in self.episodes)


# -- the layout every family shares ------------------------------------------------------------------


@dataclass(frozen=True)
class Slot:
    kind: str | None  # the episode this slot belongs to, None between episodes
    own: bool  # the episode's own event (else ordinary traffic, interleaved or between episodes)
    t: float  # position in the run, 0..1, for drift


def _log_uniform(rng: random.Random, low: float, high: float) -> float:
    return math.exp(rng.uniform(math.log(low), math.log(high)))


def layout(
    rng: random.Random, knobs: Knobs, caps: dict[str, int] | None = None
) -> tuple[list[Slot], list[Episode], dict[str, Any]]:
    """Warm-up, then per kind (shuffled) a gap of ordinary traffic and an episode, then a last gap.
    An episode's first and last events are its own; ``round(share * length)`` of its events are.
    ``caps``: the most events an episode of a kind may last."""
    unknown = [k for k in knobs.kinds if k not in KINDS]
    if unknown:
        raise ValueError(f"unknown episode kind {unknown[0]!r}; expected one of {', '.join(KINDS)}")
    if knobs.share is not None and not 0 < knobs.share <= 1:
        raise ValueError(f"share must be in (0, 1], got {knobs.share}")
    if knobs.length is not None and knobs.length < 2:
        raise ValueError(f"length must be at least 2 events, got {knobs.length}")
    cells: list[tuple[str | None, bool]] = []
    drawn: list[dict[str, Any]] = []
    if knobs.quiet:
        cells = [(None, False)] * knobs.events
    else:
        cells = [(None, False)] * knobs.warmup
        order = list(knobs.kinds)
        rng.shuffle(order)
        for kind in order:
            share = knobs.share if knobs.share is not None else rng.choice(SHARES)
            length = knobs.length or round(_log_uniform(rng, *LENGTHS))
            length = min(length, (caps or {}).get(kind, length))
            own_count = max(2, round(share * length))
            inner = sorted(rng.sample(range(1, length - 1), own_count - 2)) if length > 2 else []
            mine = {0, length - 1, *inner}
            cells += [(None, False)] * knobs.gap
            cells += [(kind, i in mine) for i in range(length)]
            drawn.append({"kind": kind, "share": share, "length": length, "own": len(mine)})
        cells += [(None, False)] * knobs.gap
    total = len(cells)
    slots = [Slot(kind, own, i / max(1, total - 1)) for i, (kind, own) in enumerate(cells)]
    episodes = []
    index = 0
    while index < total:
        kind = slots[index].kind
        if kind is None:
            index += 1
            continue
        start = index
        while index < total and slots[index].kind == kind:
            index += 1
        episodes.append(Episode(kind, start, index - 1))
    return slots, episodes, {"episodes": drawn}


def arrivals(rng: random.Random, count: int, rate: float) -> list[float]:
    """Poisson arrivals: seconds from the start of ``count`` events at ``rate`` events per second."""
    times, now = [], 0.0
    for _ in range(count):
        times.append(now)
        now += rng.expovariate(rate)
    return times


def _iso(seconds: float) -> str:
    whole = math.floor(seconds)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(EPOCH + whole)) + f".{int((seconds - whole) * 1000):03d}Z"


# -- what the SDK families share: drifting mixes, addresses, agents, words, payloads -----------------


class Mix:
    """A Zipf-like popularity over ``items`` that drifts: by the end of the run (t = 1) with drift d,
    each item's weight is (1 - d) of its first and d of another item's."""

    def __init__(self, rng: random.Random, items: list[Any], drift: float) -> None:
        self.items = items
        self.start = [1 / (i + 1) for i in range(len(items))]
        order = list(range(len(items)))
        rng.shuffle(order)
        self.end = [self.start[j] for j in order]
        self.drift = drift

    def pick(self, rng: random.Random, t: float) -> Any:
        if not self.drift:
            return rng.choices(self.items, self.start)[0]
        d = self.drift * t
        return rng.choices(self.items, [(1 - d) * a + d * b for a, b in zip(self.start, self.end, strict=True)])[0]


WORDS = [
    "red",
    "shoes",
    "shirt",
    "lamp",
    "desk",
    "coffee",
    "mug",
    "socks",
    "backpack",
    "rain",
    "jacket",
    "kettle",
    "blue",
    "green",
    "black",
    "white",
    "wool",
    "cotton",
    "leather",
    "linen",
    "oak",
    "walnut",
    "steel",
    "glass",
    "ceramic",
    "small",
    "large",
    "kids",
    "men",
    "women",
    "running",
    "hiking",
    "winter",
    "summer",
    "chair",
    "table",
    "sofa",
    "pillow",
    "blanket",
    "towel",
    "bottle",
    "cup",
    "plate",
    "bowl",
    "knife",
    "pan",
    "pot",
    "oven",
    "toaster",
    "blender",
    "phone",
    "case",
    "charger",
    "cable",
    "headphones",
    "speaker",
    "camera",
    "watch",
    "ring",
    "necklace",
    "bracelet",
    "wallet",
    "belt",
    "hat",
    "scarf",
    "gloves",
    "boots",
    "sandals",
    "umbrella",
    "tent",
    "sleeping",
    "bag",
    "lantern",
    "bike",
    "helmet",
    "ball",
    "racket",
    "yoga",
    "mat",
    "dumbbell",
    "notebook",
    "pen",
    "pencil",
    "paper",
    "printer",
    "monitor",
    "keyboard",
    "mouse",
    "router",
    "lightbulb",
    "candle",
    "frame",
    "mirror",
    "rug",
    "curtain",
    "plant",
    "pot",
    "seeds",
]
RESOURCES = [
    "users",
    "orders",
    "products",
    "invoices",
    "carts",
    "sessions",
    "reports",
    "teams",
    "projects",
    "comments",
    "payments",
    "refunds",
    "shipments",
    "addresses",
    "reviews",
    "coupons",
    "categories",
    "inventory",
    "suppliers",
    "warehouses",
    "tickets",
    "messages",
    "notifications",
    "subscriptions",
    "plans",
    "webhooks",
    "files",
    "images",
    "exports",
    "audits",
]
SUBRESOURCES = ("items", "history", "status", "notes", "attachments", "members", "settings", "events", "lines")
ORDINARY_AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{v}.0.{b}.{p} Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.{m} Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_{m} like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
    "Mozilla/5.0 (X11; Linux x86_64; rv:12{m}.0) Gecko/20100101 Firefox/12{m}.0",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{v}.0.{b}.{p} Mobile Safari/537.36",
    "ShopApp/5.{m}.{p} (iOS 17.{m}; iPhone15,2)",
    "okhttp/4.12.0",
)
TOOL_AGENTS = {
    "scanner": (
        "Mozilla/5.00 (Nikto/2.5.0) (Evasions:None) (Test:{n})",
        "gobuster/3.6",
        "Fuzz Faster U Fool v2.1.0-dev",
        "Mozilla/5.0 (compatible; Nmap Scripting Engine; https://nmap.org/book/nse.html)",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
    ),
    "sql_injection": (
        "sqlmap/1.8.2#stable (https://sqlmap.org)",
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/119.0.0.0 Safari/537.36",
    ),
    "credential_stuffing": (
        "python-requests/2.31.0",
        "Go-http-client/1.1",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{v}.0.0.0 Safari/537.36",
        "Hydra",
    ),
}
PROBES = (
    *scenarios._SCANNER_PATHS,
    "/wp-content/plugins/revslider/temp/update_extract/revslider/shell.php", "/.DS_Store", "/.svn/entries",
    "/owa/auth/logon.aspx", "/solr/admin/info/system", "/HNAP1/", "/boaform/admin/formLogin", "/manager/html",
    "/.well-known/security.txt", "/console/", "/api/jsonws/invoke", "/druid/index.html", "/telescope/requests",
    "/_ignition/execute-solution", "/webui/", "/sftp-config.json", "/.vscode/sftp.json", "/debug/default/view",
)  # fmt: skip
PROBE_WORDS = ("admin", "backup", "old", "test", "db", "dump", "site", "www", "config", "private", "data", "temp")
PROBE_EXTENSIONS = ("bak", "zip", "tar.gz", "sql", "old", "php", "inc", "swp", "7z", "txt")
PAYLOADS = (
    *scenarios._INJECTIONS,
    "1 AND 1=1", "1' AND '1'='2", "admin'--", "1 UNION ALL SELECT NULL,NULL,NULL--", "1' WAITFOR DELAY '0:0:5'--",
    "' OR 1=1 LIMIT 1 -- -", "1) OR (1=1", "1' AND EXTRACTVALUE(1,CONCAT(0x5c,version()))--",
    "x' AND 1=(SELECT COUNT(*) FROM tabname); --", "1;SELECT PG_SLEEP(5)--", "' or ''='",
    "1 AND {n}={n}", "1' AND {n}={n} AND 'abc'='abc", "1) AND {n}=CAST((CHR(113)||CHR(106)) AS NUMERIC)--",
    "-{n}' UNION ALL SELECT CONCAT(0x71,0x62),NULL-- -", "{word}' OR SLEEP({d})#",
)  # fmt: skip


def ordinary_ip(rng: random.Random) -> str:
    """A visitor's address: many addresses in a few networks."""
    first = rng.choice((10, 73, 86, 92, 109, 172, 188, 203))
    return f"{first}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"


def tool_ip(rng: random.Random) -> str:
    return f"{rng.choice((45, 89, 185, 193, 194))}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"


def agent(rng: random.Random, templates: tuple[str, ...]) -> str:
    return rng.choice(templates).format(
        v=rng.randrange(118, 125), b=rng.randrange(5000, 6500), p=rng.randrange(40, 200), m=rng.randrange(0, 6),
        n=f"{rng.randrange(1, 999999):06d}",
    )  # fmt: skip


def words(rng: random.Random, low: int = 1, high: int = 3) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(low, high)))


def payload(rng: random.Random) -> str:
    return rng.choice(PAYLOADS).format(n=rng.randrange(1000, 9999), d=rng.randint(2, 9), word=rng.choice(WORDS))


def probe(rng: random.Random) -> str:
    if rng.random() < 0.6:
        return rng.choice(PROBES)
    return f"/{rng.choice(PROBE_WORDS)}.{rng.choice(PROBE_EXTENSIONS)}"


def an_id(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def stuffed_user(rng: random.Random) -> str:
    """A name from a leaked list: many distinct users, most of them not ours."""
    name = rng.choice(("admin", "root", "support", "test", "info", "sales", "j.smith", "mike", "anna", "user"))
    if rng.random() < 0.5:
        return f"{name}{rng.randrange(1, 10_000)}@{rng.choice(('gmail.com', 'yahoo.com', 'mail.ru', 'example.org'))}"
    return f"{name}{rng.randrange(100)}"


@dataclass(frozen=True)
class Route:
    method: str
    template: str  # e.g. /api/orders/{id}/items
    median_ms: float
    status: int  # the status of a success

    def path(self, rng: random.Random) -> str:
        if "{id}" not in self.template:
            return self.template
        return self.template.replace("{id}", str(rng.randrange(1, 10 ** rng.choice((3, 4, 5, 6)))))

    def duration(self, rng: random.Random) -> float:
        return self.median_ms * math.exp(rng.gauss(0, 0.5))


def routes(rng: random.Random, count: int) -> list[Route]:
    """``count`` distinct API routes; the search and login routes are always among them."""
    templates = ["/api/search", "/api/login"]
    for resource in RESOURCES:
        templates += [f"/api/{resource}", f"/api/{resource}/{{id}}"]
        templates += [f"/api/{resource}/{{id}}/{sub}" for sub in SUBRESOURCES]
    head, rest = templates[:2], templates[2:]
    rng.shuffle(rest)
    chosen = head + rest[: max(0, count - 2)]
    out = []
    for template in chosen:
        if template in ("/api/login", "/api/search"):
            method = "POST" if template == "/api/login" else "GET"
        else:
            method = rng.choices(("GET", "POST", "PUT", "DELETE"), (80, 12, 6, 2))[0]
        status = {"GET": 200, "POST": 201, "PUT": 200, "DELETE": 204}[method] if template != "/api/login" else 200
        out.append(Route(method, template, _log_uniform(rng, 8, 250), status))
    return out


@dataclass
class Context:
    """What a family's generator sees: the seeded random source, the drawn knobs, and per-episode
    state (the tool's address and agent, the attacker's addresses), reset at each episode."""

    rng: random.Random
    routes: list[Route]
    mix: Mix
    episode: dict[str, Any] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)  # what lasts the whole stream (a site's sessions)

    def attacker(self, kind: str) -> tuple[str, str]:
        """One tool per episode: its address (one of up to three) and its user agent."""
        if "ips" not in self.episode:
            self.episode["ips"] = [tool_ip(self.rng) for _ in range(1 if kind != "credential_stuffing" else 3)]
            self.episode["agent"] = agent(self.rng, TOOL_AGENTS.get(kind, TOOL_AGENTS["scanner"]))
        return self.rng.choice(self.episode["ips"]), self.episode["agent"]


# -- sdk-api-metrics -------------------------------------------------------------------------------------


def _api_call(ctx: Context, t: float, *, route: Route | None = None) -> dict[str, Any]:
    rng = ctx.rng
    route = route or ctx.mix.pick(rng, t)
    path = route.path(rng)
    status = route.status
    if route.template == "/api/search":
        path += "?q=" + quote_plus(words(rng))
    elif route.template == "/api/login":
        status = 401 if rng.random() < 0.08 else 200
    elif rng.random() < 0.01:
        status = rng.choice((404, 400, 409, 500))
    return {
        "timestamp": None,
        "request_id": an_id(rng),
        "endpoint": path,
        "method": route.method,
        "status": status,
        "duration_ms": round(route.duration(rng)),
        "bytes": rng.randrange(80, 40_000),
        "client_ip": ordinary_ip(rng),
        "user_agent": agent(rng, ORDINARY_AGENTS),
    }


def api_ordinary(ctx: Context, t: float) -> dict[str, Any]:
    return _api_call(ctx, t)


def api_anomalous(ctx: Context, kind: str, t: float) -> dict[str, Any]:
    rng = ctx.rng
    if kind in ("error_burst", "latency_spike"):
        call = _api_call(ctx, t)
        if kind == "error_burst":
            call["status"] = rng.choice((500, 502, 503, 504))
            call["bytes"] = rng.randrange(60, 400)
        else:
            call["duration_ms"] = round(call["duration_ms"] * rng.uniform(20, 60) + 1500)
        return call
    login = next(r for r in ctx.routes if r.template == "/api/login")
    call = _api_call(ctx, t, route=login)
    ip, ua = ctx.attacker(kind)
    if kind == "scanner":
        call.update(endpoint=probe(rng), method=rng.choice(("GET", "GET", "HEAD")), status=404, client_ip=ip,
                    user_agent=ua, duration_ms=rng.randrange(1, 12), bytes=rng.randrange(100, 300))  # fmt: skip
    elif kind == "sql_injection":
        target = rng.choice(("/api/search?q=", "/api/products?id=", "/api/orders?sort="))
        call.update(endpoint=target + quote(payload(rng)), method="GET", status=rng.choice((200, 200, 500)),
                    client_ip=ip, user_agent=ua, duration_ms=rng.randrange(5, 900))  # fmt: skip
    elif kind == "credential_stuffing":
        call.update(status=401, client_ip=ip, user_agent=ua)
    elif kind == "new_endpoint":
        call.update(endpoint=rng.choice(("/api/v2/export", "/api/v2/export?format=csv")), method="GET", status=200,
                    duration_ms=rng.randrange(300, 1200), bytes=rng.randrange(200_000, 900_000))  # fmt: skip
    else:
        raise ValueError(f"unknown episode kind {kind!r}")
    return call


# -- sdk-logs ----------------------------------------------------------------------------------------------

_HOSTS = tuple(f"web-{i}" for i in range(1, 7))


def _log(ctx: Context, level: str, logger: str, message: str) -> dict[str, Any]:
    return {
        "timestamp": None,
        "level": level,
        "logger": logger,
        "host": ctx.rng.choice(_HOSTS),
        "request_id": an_id(ctx.rng),
        "message": message,
    }


def logs_ordinary(ctx: Context, t: float) -> dict[str, Any]:
    rng = ctx.rng
    route = ctx.mix.pick(rng, t)
    path = route.path(rng)
    what = rng.choices(("start", "finish", "query", "cache", "search", "login", "job", "mail", "warn"),
                       (20, 25, 15, 10, 8, 8, 5, 5, 4))[0]  # fmt: skip
    if what == "start":
        return _log(ctx, "info", "app.request", f"Request started {route.method} {path} from {ordinary_ip(rng)}")
    if what == "finish":
        return _log(ctx, "info", "app.request",
                    f"Request finished {route.method} {path} {route.status} in {route.duration(rng):.0f}ms")  # fmt: skip
    if what == "query":
        table = route.template.split("/")[2]
        return _log(ctx, "debug", "django.db",
                    f"Query executed in {rng.uniform(0.2, 40):.1f}ms: SELECT * FROM {table} WHERE id = {rng.randrange(1, 99999)}")  # fmt: skip
    if what == "cache":
        return _log(
            ctx,
            "debug",
            "app.cache",
            f"Cache {rng.choice(('hit', 'hit', 'miss'))} for key {route.template.split('/')[2]}:{rng.randrange(1, 99999)}",
        )
    if what == "search":
        return _log(ctx, "info", "app.search", f"Search for '{words(rng)}' returned {rng.randrange(0, 120)} results")
    if what == "login":
        user = rng.choice(_USERS)
        if rng.random() < 0.08:
            return _log(
                ctx, "warning", "app.auth", f"Login failed for user {user} from {ordinary_ip(rng)}: invalid password"
            )
        return _log(ctx, "info", "app.auth", f"User {user} logged in from {ordinary_ip(rng)}")
    if what == "job":
        return _log(ctx, "info", "app.jobs",
                    f"Job {rng.choice(('sync_inventory', 'send_digest', 'reindex', 'expire_carts'))} finished in {rng.uniform(0.1, 30):.1f}s")  # fmt: skip
    if what == "mail":
        return _log(
            ctx,
            "info",
            "app.mail",
            f"Sent {rng.choice(('receipt', 'welcome', 'reset'))} email to customer {rng.randrange(1, 99999)}",
        )
    return _log(
        ctx, "warning", "app.request", f"Slow query took {rng.randrange(250, 900)}ms on {route.template.split('/')[2]}"
    )


_USERS = tuple(f"{n}{i}" if i else n for n in ("ana", "ben", "chloe", "dev", "eli", "fay", "gus", "hana", "ivan", "jo")
               for i in range(0, 30))  # fmt: skip


def logs_anomalous(ctx: Context, kind: str, t: float) -> dict[str, Any]:
    rng = ctx.rng
    if kind == "scanner":
        ip, ua = ctx.attacker(kind)
        return _log(ctx, "warning", "django.request", f"Not Found: {probe(rng)} (client {ip}, agent {ua})")
    if kind == "sql_injection":
        ip, _ = ctx.attacker(kind)
        text = payload(rng)
        if rng.random() < 0.5:
            return _log(ctx, "info", "app.search", f"Search for '{text}' returned 0 results")
        return _log(
            ctx,
            "debug",
            "django.db",
            f"Query executed in {rng.uniform(0.2, 40):.1f}ms: SELECT * FROM products WHERE name LIKE '%{text}%'",
        )
    if kind == "error_burst":
        return _log(ctx, "error", rng.choice(("django.db", "app.request", "app.payments")), rng.choice((
            f"Connection timeout to db-primary:5432 after {rng.randrange(1000, 5000)}ms",
            "OperationalError: could not connect to server: Connection refused",
            f"Request failed {ctx.mix.pick(rng, t).method} {ctx.mix.pick(rng, t).path(rng)} 500: upstream unavailable",
            f"Traceback (most recent call last): psycopg.OperationalError: connection to server at \"10.0.3.{rng.randrange(2, 9)}\" failed",
        )))  # fmt: skip
    if kind == "latency_spike":
        route = ctx.mix.pick(rng, t)
        return _log(ctx, "info", "app.request",
                    f"Request finished {route.method} {route.path(rng)} {route.status} in {route.duration(rng) * rng.uniform(20, 60) + 1500:.0f}ms")  # fmt: skip
    if kind == "credential_stuffing":
        ip, _ = ctx.attacker(kind)
        return _log(
            ctx, "warning", "app.auth", f"Login failed for user {stuffed_user(rng)} from {ip}: invalid password"
        )
    if kind == "new_endpoint":
        if rng.random() < 0.5:
            return _log(
                ctx, "info", "app.request", f"Request started GET /api/v2/export?format=csv from {ordinary_ip(rng)}"
            )
        return _log(
            ctx, "info", "app.request", f"Request finished GET /api/v2/export 200 in {rng.randrange(300, 1200)}ms"
        )
    raise ValueError(f"unknown episode kind {kind!r}")


# -- sdk-security ------------------------------------------------------------------------------------------


def _security(ctx: Context, action: str, user: str | None, ip: str, success: bool, **extra: Any) -> dict[str, Any]:
    rng = ctx.rng
    event: dict[str, Any] = {"timestamp": None, "event_id": an_id(rng), "action": action, "user": user, "ip": ip,
                             "success": success}  # fmt: skip
    event.update(extra)
    event.setdefault("user_agent", agent(rng, ORDINARY_AGENTS))
    event.setdefault("duration_ms", round(rng.lognormvariate(math.log(40), 0.5)))
    return event


def security_ordinary(ctx: Context, t: float) -> dict[str, Any]:
    rng = ctx.rng
    user, ip = rng.choice(_USERS), ordinary_ip(rng)
    action = rng.choices(("login", "logout", "token_refresh", "mfa_challenge", "access", "password_change"),
                         (25, 10, 20, 8, 35, 2))[0]  # fmt: skip
    if action == "login":
        failed = rng.random() < 0.06
        extra: dict[str, Any] = {"method": rng.choice(("password", "password", "sso", "passkey"))}
        if failed:
            extra["attempts"] = rng.randint(1, 3)
        return _security(ctx, "login", user, ip, not failed, **extra)
    if action == "access":
        route = ctx.mix.pick(rng, t)
        allowed = rng.random() > 0.02
        extra = {"resource": route.path(rng), "permission": route.method.lower()}
        if not allowed:
            extra["reason"] = "insufficient_scope"
        return _security(ctx, "access", user, ip, allowed, **extra)
    return _security(ctx, action, user, ip, rng.random() > 0.01)


def security_anomalous(ctx: Context, kind: str, t: float) -> dict[str, Any]:
    rng = ctx.rng
    if kind in ("error_burst", "latency_spike"):
        event = security_ordinary(ctx, t)
        if kind == "error_burst":
            event.update(
                success=False, error=rng.choice(("identity_provider_unavailable", "ldap_timeout", "token_service_500"))
            )
        else:
            event["duration_ms"] = round(event["duration_ms"] * rng.uniform(20, 60) + 1500)
        return event
    ip, ua = ctx.attacker(kind)
    if kind == "scanner":
        return _security(ctx, "access", None, ip, False, resource=probe(rng), permission="get", reason="not_found",
                         user_agent=ua, duration_ms=rng.randrange(1, 8))  # fmt: skip
    if kind == "sql_injection":
        if rng.random() < 0.6:
            return _security(ctx, "login", payload(rng), ip, False, method="password", attempts=1, user_agent=ua)
        return _security(ctx, "access", None, ip, False, resource="/api/search?q=" + payload(rng), permission="get",
                         reason="waf_blocked", user_agent=ua)  # fmt: skip
    if kind == "credential_stuffing":
        return _security(ctx, "login", stuffed_user(rng), ip, False, method="password", attempts=1, user_agent=ua)
    if kind == "new_endpoint":
        return _security(ctx, "api_token_created", rng.choice(_USERS), ordinary_ip(rng), True, scope="admin:export",
                         token_id=an_id(rng))  # fmt: skip
    raise ValueError(f"unknown episode kind {kind!r}")


# -- sdk-transactions ------------------------------------------------------------------------------------

_MERCHANT_NAMES = [
    "Amazon",
    "Target",
    "Walmart",
    "Costco",
    "Zalando",
    "Ikea",
    "Apple",
    "Spotify",
    "Netflix",
    "Uber",
    "Lyft",
    "Starbucks",
    "Shell",
    "Lidl",
    "Aldi",
    "Tesco",
    "Carrefour",
    "Decathlon",
    "Etsy",
    "eBay",
    "Steam",
    "Airbnb",
    "Booking",
    "Zara",
    "H&M",
    "Nike",
    "Adidas",
    "Sephora",
    "Boots",
    "Rewe",
    "Edeka",
]
_COUNTRIES = ("US", "US", "US", "GB", "DE", "FR", "NL", "CA", "ES", "IT")


@dataclass(frozen=True)
class Merchant:
    name: str
    country: str
    median_amount: float
    channel: str


def merchants(rng: random.Random, count: int) -> list[Merchant]:
    names = list(_MERCHANT_NAMES)
    while len(names) < count:
        names.append(
            f"{rng.choice(_MERCHANT_NAMES)} {rng.choice(('Store', 'Online', 'Market', 'Express'))} #{len(names)}"
        )
    rng.shuffle(names)
    return [Merchant(n, rng.choice(_COUNTRIES), _log_uniform(rng, 3, 400), rng.choice(("web", "pos", "app", "web")))
            for n in names[:count]]  # fmt: skip


def _transaction(ctx: Context, t: float, merchant: Merchant | None = None) -> dict[str, Any]:
    rng = ctx.rng
    m = merchant or ctx.mix.pick(rng, t)
    declined = rng.random() < 0.03
    event: dict[str, Any] = {
        "timestamp": None,
        "transaction_id": f"txn_{rng.getrandbits(64):016x}",
        "amount": round(m.median_amount * math.exp(rng.gauss(0, 0.6)), 2),
        "currency": {"US": "USD", "GB": "GBP", "CA": "CAD"}.get(m.country, "EUR"),
        "merchant": m.name,
        "country": m.country,
        "card_last4": f"{rng.randrange(10_000):04d}",
        "channel": m.channel,
        "status": "declined" if declined else "approved",
        "processing_ms": round(rng.lognormvariate(math.log(180), 0.4)),
        "customer_id": f"cus_{rng.randrange(1, 200_000)}",
        "ip": ordinary_ip(rng),
        "description": f"Order {rng.randrange(1000, 999_999)}: {rng.randint(1, 3)}x {words(rng, 1, 2)}",
    }
    if declined:
        event["reason"] = rng.choice(("insufficient_funds", "do_not_honor", "expired_card"))
    return event


def transactions_ordinary(ctx: Context, t: float) -> dict[str, Any]:
    return _transaction(ctx, t)


def transactions_anomalous(ctx: Context, kind: str, t: float) -> dict[str, Any]:
    rng = ctx.rng
    event = _transaction(ctx, t)
    if kind == "error_burst":
        event.update(status="error", reason=rng.choice(("processor_timeout", "issuer_unavailable", "gateway_502")))
        return event
    if kind == "latency_spike":
        event["processing_ms"] = round(event["processing_ms"] * rng.uniform(15, 50) + 2000)
        return event
    ip, _ = ctx.attacker(kind)
    if kind == "scanner":
        event.update(merchant=f"m_{rng.getrandbits(40):010x}", amount=1.0, status="rejected", reason="invalid_merchant",
                     channel="api", ip=ip)  # fmt: skip
    elif kind == "sql_injection":
        text = payload(rng)
        if rng.random() < 0.5:
            event["description"] = f"Order {rng.randrange(1000, 999_999)}: {text}"
        else:
            event["merchant"] = f"{event['merchant']}{text}"
        event.update(ip=ip)
    elif kind == "credential_stuffing":
        if "target" not in ctx.episode:
            ctx.episode["target"] = ctx.mix.pick(rng, 0.0)
        m = ctx.episode["target"]
        event = _transaction(ctx, t, m)
        event.update(amount=round(rng.uniform(0.5, 2.0), 2), status="declined",
                     reason=rng.choice(("incorrect_cvc", "do_not_honor", "card_velocity_exceeded")), ip=ip)  # fmt: skip
    elif kind == "new_endpoint":
        event.update(channel="crypto_bridge", currency="USDT")
    else:
        raise ValueError(f"unknown episode kind {kind!r}")
    return event


# -- site-cms and site-forum: a real site's spans, visitors in sessions ---------------------------------------
#
# Events exactly as ``driftlock.events.span_to_event`` makes them from a Django site's server spans (kind,
# method, route pattern, status, duration bucket, scrubbed query), but the ordinary traffic is made by
# visitors in sessions, as a load generator with sessions (or people) make it: a visitor's requests follow
# each other (a few others' interleaved), several user types with their own paths through the site (readers,
# searchers paging through results, members who log in, post and log out, a crawler), a search box that keeps
# receiving words never seen before (a long-tailed vocabulary), mistyped passwords and removed pages, and a
# mix of user types that drifts. The site itself does not vary with the seed beyond its vocabulary and
# popularity: what varies is who visits, how many at once, and how their sessions interleave.


def _bucket(ms: float) -> str:
    from driftlock.events import duration_bucket

    return duration_bucket(int(ms * 1e6))


_SYLLABLES = ("ka", "lo", "mi", "ne", "ru", "ta", "ve", "si", "po", "de", "ar", "en", "il", "or", "un", "ba", "ch",
              "st", "tr", "qu", "ga", "fe", "ho", "ly", "wi", "zo", "ex", "pr", "gr", "th")  # fmt: skip


def vocabulary(rng: random.Random, size: int) -> list[str]:
    """Words a site's pages are made of: WORDS first, then made-up words of 2-4 syllables."""
    out = list(dict.fromkeys(WORDS))
    seen = set(out)
    while len(out) < size:
        word = "".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(2, 4)))
        if word not in seen:
            seen.add(word)
            out.append(word)
    rng.shuffle(out)
    return out


@dataclass(frozen=True)
class Site:
    """A site's routes (Django route patterns) as a visitor meets them, and its user types."""

    name: str
    pages: str  # the catch-all page route
    login: str
    logout: str
    search: str
    lists: tuple[str, ...]  # paginated lists (``?page=N``)
    details: tuple[str, ...]  # detail routes, ids in the pattern
    post: str  # what a member posts (a comment, a reply)
    types: dict[str, float]  # user type -> weight at the start of the run
    medians: dict[str, float]  # route -> median duration, ms


SITES = {
    "site-cms": Site(
        "site-cms",
        "<path:slug>/",
        "accounts/login/",
        "accounts/logout/",
        "search/",
        ("blog/", "blog/category/<slug:category>/"),
        ("blog/<int:year>/<slug:slug>/",),
        "blog/<slug:slug>/comment/",
        {"reader": 45, "searcher": 30, "member": 12, "crawler": 5, "staff": 3},
        {"search/": 60, "accounts/login/": 120, "blog/": 35},
    ),
    "site-forum": Site(
        "site-forum",
        "pages/<slug:slug>/",
        "login/",
        "logout/",
        "search/",
        ("forum/<slug:forum>/", "members/"),
        ("topic/<int:pk>/<slug:slug>/", "members/<str:username>/"),
        "topic/<int:pk>/reply/",
        {"reader": 40, "searcher": 6, "member": 40, "crawler": 6, "staff": 2},
        {"search/": 150, "login/": 180, "topic/<int:pk>/reply/": 90},
    ),
}
REMOVED = ("/old-page/", "/blog/2019/summer-sale/", "/about-us.html", "/favicon.png", "/wp-login.php")
"""Paths ordinary visitors still ask for (bookmarks, old links): 404s of every day."""


class Sessions:
    """The visitors of one stream: a set of open sessions, each a queue of requests, drawn per user type.

    The next event comes from the visitor of the last one with probability ``stickiness`` (a visitor's
    requests follow each other), else from another open session; a finished session is replaced by a new
    visitor whose type is drawn from the (drifting) mix."""

    def __init__(self, rng: random.Random, site: Site, drift: float) -> None:
        self.rng, self.site, self.drift = rng, site, drift
        self.concurrency = rng.choice((1, 2, 3, 5, 8, 12, 25))
        self.stickiness = rng.uniform(0.5, 0.9)
        self.words = vocabulary(rng, rng.choice((300, 1000, 3000)))
        self.weights = [1 / (i + 1) ** 1.05 for i in range(len(self.words))]
        self.pages = [f"p{i}" for i in range(rng.randint(20, 80))]
        types = list(site.types)
        self.types, self.start = types, [site.types[t] for t in types]
        order = list(range(len(types)))
        rng.shuffle(order)
        self.end = [self.start[j] for j in order]
        self.open: list[list[dict[str, Any]]] = []
        self.last = 0

    def word(self) -> str:
        return self.rng.choices(self.words, self.weights)[0]

    def _span(self, method: str, route: str, status: int, query: dict[str, str] | None = None,
              factor: float = 1.0) -> dict[str, Any]:  # fmt: skip
        median = self.site.medians.get(route, 25.0)
        body: dict[str, Any] = {"kind": "http", "method": method, "route": route, "status": status,
                                "duration": _bucket(median * factor * math.exp(self.rng.gauss(0, 0.6)))}  # fmt: skip
        if query:
            body["query"] = query
        return body

    def session(self, kind: str) -> list[dict[str, Any]]:
        rng, site = self.rng, self.site
        out: list[dict[str, Any]] = []

        def browse(n: int) -> None:
            for _ in range(n):
                r = rng.random()
                if r < 0.35:
                    out.append(self._span("GET", site.pages, 200))
                elif r < 0.55:
                    lst = rng.choice(site.lists)
                    page = rng.choices(("", "2", "3", "4"), (60, 25, 10, 5))[0]
                    out.append(self._span("GET", lst, 200, {"page": page} if page else None))
                elif r < 0.9:
                    out.append(self._span("GET", rng.choice(site.details), 200))
                elif r < 0.97:
                    out.append(self._span("GET", "/", 200))
                else:
                    out.append(self._span("GET", rng.choice(REMOVED), 404, factor=0.3))

        if kind == "reader":
            out.append(self._span("GET", "/", 200))
            browse(rng.randint(1, 12))
        elif kind == "searcher":
            out.append(self._span("GET", rng.choice(("/", site.pages)), 200))
            for _ in range(rng.randint(1, 5)):
                q = " ".join(self.word() for _ in range(rng.choices((1, 2, 3), (55, 35, 10))[0]))
                out.append(self._span("GET", site.search, 200, {"q": q}))
                for page in range(2, 2 + (rng.random() < 0.3) * rng.randint(1, 3)):
                    out.append(self._span("GET", site.search, 200, {"q": q, "page": str(page)}))
                browse(rng.randint(0, 2))
        elif kind in ("member", "staff"):
            out.append(self._span("GET", site.login, 200))
            while rng.random() < 0.12:  # a mistyped password re-renders the form
                out.append(self._span("POST", site.login, 200))
            out.append(self._span("POST", site.login, 302))
            browse(rng.randint(1, 8))
            for _ in range(rng.choices((0, 1, 2), (50, 40, 10))[0]):
                out.append(self._span("GET", rng.choice(site.details), 200))
                out.append(self._span("POST", site.post, 302))
            if kind == "staff":
                for _ in range(rng.randint(2, 10)):
                    out.append(self._span(rng.choice(("GET", "GET", "POST")), "admin/<app_label>/<model>/", 200))
            if rng.random() < 0.7:
                out.append(self._span("POST", site.logout, 302))
        else:  # a crawler: feed and sitemap, then many pages quickly
            out.append(self._span("GET", rng.choice(("feed/", "sitemap.xml")), 200))
            for _ in range(rng.randint(5, 30)):
                out.append(self._span("GET", rng.choice((site.pages, *site.details)), 200, factor=0.8))
        return out

    def next(self, t: float) -> dict[str, Any]:
        rng = self.rng
        while len(self.open) < self.concurrency:
            d = self.drift * t
            weights = [(1 - d) * a + d * b for a, b in zip(self.start, self.end, strict=True)]
            self.open.append(self.session(rng.choices(self.types, weights)[0]))
        if rng.random() >= self.stickiness or self.last >= len(self.open):
            self.last = rng.randrange(len(self.open))
        event = self.open[self.last].pop(0)
        if not self.open[self.last]:
            self.open.pop(self.last)
            self.last = len(self.open)  # the next event comes from another visitor
        return event


def _site(ctx: Context) -> Sessions:
    sessions: Sessions = ctx.state["sessions"]
    return sessions


def _span_event(body: dict[str, Any], site: Site) -> dict[str, Any]:
    return {"timestamp": None, "type": "trace", "body": body, "attributes": {"service": site.name}}


def site_ordinary(ctx: Context, t: float) -> dict[str, Any]:
    sessions = _site(ctx)
    return _span_event(sessions.next(t), sessions.site)


def site_anomalous(ctx: Context, kind: str, t: float) -> dict[str, Any]:
    sessions = _site(ctx)
    rng, site = ctx.rng, sessions.site
    if kind in ("error_burst", "latency_spike"):
        body = sessions.next(t)
        if kind == "error_burst":
            body.update(status=500, error=rng.choice(("OperationalError", "ConnectionError", "TimeoutError")))
        else:
            body["duration"] = _bucket(rng.uniform(2500, 9000))
        return _span_event(body, site)
    if kind == "scanner":
        from driftlock.events import normalize_path

        body = sessions._span(rng.choice(("GET", "GET", "HEAD")), normalize_path(probe(rng)), 404, factor=0.3)
    elif kind == "sql_injection":
        body = sessions._span("GET", site.search, rng.choice((200, 200, 500)), {"q": payload(rng)})
    elif kind == "credential_stuffing":
        body = sessions._span("POST", site.login, 200, factor=0.5)
    elif kind == "new_endpoint":
        body = sessions._span("GET", "api/v2/export/", 200, rng.choice((None, {"format": "csv"})), factor=20)
    else:
        raise ValueError(f"unknown episode kind {kind!r}")
    return _span_event(body, site)


# -- the SDK families' common generator --------------------------------------------------------------------


@dataclass(frozen=True)
class SdkFamily:
    name: str
    ordinary: Callable[[Context, float], dict[str, Any]]
    anomalous: Callable[[Context, str, float], dict[str, Any]]
    timestamp_key: str = "timestamp"
    catalogue: str = "routes"  # what the routes knob counts: routes, or merchants
    site: Site | None = None  # site families: the site whose visitors make the ordinary traffic

    def generate(self, seed: int, knobs: Knobs) -> LabelledStream:
        rng = random.Random(f"{self.name}/{seed}")
        n_routes = knobs.routes or round(_log_uniform(rng, *ROUTES))
        rate = knobs.rate or _log_uniform(rng, *RATES)
        drift = knobs.drift if knobs.drift is not None else rng.choice((0.0, 0.0, 0.5, 1.0))
        slots, episodes, drawn = layout(rng, knobs)
        catalogue: list[Any] = merchants(rng, n_routes) if self.catalogue == "merchants" else routes(rng, n_routes)
        ctx = Context(rng, catalogue if self.catalogue == "routes" else [], Mix(rng, catalogue, drift))
        if self.site is not None:
            ctx.state["sessions"] = Sessions(random.Random(rng.random()), self.site, drift)
        times = arrivals(rng, len(slots), rate)
        payloads, own = [], []
        previous: str | None = None
        for slot, at in zip(slots, times, strict=True):
            if slot.kind != previous:
                ctx.episode = {}
                previous = slot.kind
            event = self.anomalous(ctx, slot.kind, slot.t) if slot.own and slot.kind else self.ordinary(ctx, slot.t)
            event[self.timestamp_key] = _iso(at)
            payloads.append(event)
            own.append(slot.kind if slot.own else None)
        settings = {"routes": None if self.site else n_routes, "rate": round(rate, 2), "drift": drift, **drawn}
        return LabelledStream(self.name, seed, encode_events(payloads), times, episodes, own, settings)


# -- shop-spans: the demo shop in process --------------------------------------------------------------------


class Shop:
    """The demo shop under the Django test client, with the real instrumentation and the Driftlock
    hooks; spans are kept in memory. Built once per process (Django and OpenTelemetry are global)."""

    _instance: Shop | None = None

    def __init__(self) -> None:
        self.faults = Path(tempfile.mkdtemp(prefix="driftlock-quality-")) / "faults"
        os.environ.update(
            DJANGO_SETTINGS_MODULE="driftlock.demo.shop.settings",
            DRIFTLOCK_ENABLED="false",  # the middleware steps aside: spans are captured here instead of exported
            DRIFTLOCK_DEMO_FAULTS=str(self.faults),
        )
        import logging

        import django
        from opentelemetry import trace
        from opentelemetry.instrumentation.django import DjangoInstrumentor
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        logging.getLogger("django.request").setLevel(logging.CRITICAL)  # 404s and 500s are the point
        provider = TracerProvider(resource=Resource.create({"service.name": "demo-shop"}))
        self.memory = InMemorySpanExporter()
        provider.add_span_processor(SimpleSpanProcessor(self.memory))
        trace.set_tracer_provider(provider)
        django.setup()
        from django.test import Client

        from driftlock.django import conf

        DjangoInstrumentor().instrument(
            tracer_provider=provider,
            request_hook=conf.request_hook,
            response_hook=conf.response_hook,
            excluded_urls=conf.excluded_urls(scenarios.EXCLUDED),
        )
        self.client = Client(raise_request_exception=False)
        self.fault: str | None = None

    @classmethod
    def get(cls) -> Shop:
        if cls._instance is None:
            cls._instance = Shop()
        return cls._instance

    def set_fault(self, fault: str | None) -> None:
        if fault != self.fault:
            from driftlock.demo.runner import _set_fault

            _set_fault(self.faults, fault)
            self.fault = fault

    def run(self, requests: list[tuple[scenarios.Request, str | None]]) -> list[Any]:
        """Send the requests (each with the fault the shop suffers meanwhile); their server spans."""
        from opentelemetry import trace

        self.memory.clear()
        for request, fault in requests:
            self.set_fault(fault)
            if request.method == "POST":
                self.client.post(request.path, data=request.data)
            else:
                self.client.get(request.path)
        self.set_fault(None)
        spans = [s for s in self.memory.get_finished_spans() if s.kind == trace.SpanKind.SERVER]
        return sorted(spans, key=lambda s: s.start_time or 0)


def ours(span: Any) -> dict[str, Any]:
    """Our mapping: ``driftlock.events.span_to_event``, as the exporter sends it."""
    from driftlock.events import record_from_sdk_span, span_to_event

    event = span_to_event(record_from_sdk_span(span))
    assert event is not None
    return event


def naive(span: Any) -> dict[str, Any]:
    """The naive mapping: each span's full attribute set as the body, plus its name, status and exact duration."""
    body = dict(span.attributes or {})
    body.update(
        name=span.name,
        status=span.status.status_code.name,
        duration_ms=((span.end_time or 0) - (span.start_time or 0)) / 1e6,
    )
    return {"type": "trace", "body": body}


SHOP_LATENCY_CAP = 40
"""shop-spans: a latency spike's requests each sleep 0.15 s (the shop's ``slow`` fault), so its
episodes last at most this many requests, which keeps a run within minutes."""


def shop_plan(seed: int, knobs: Knobs, family: str = "shop-spans") -> tuple[list[tuple[scenarios.Request, str | None]], list[Slot], list[Episode], dict[str, Any]]:  # fmt: skip
    """The shop's requests with the fault each suffers, the slots, episodes and drawn knobs. In the
    ``tools`` family, the episodes of TOOL_KINDS replay the recorded tool's requests, in the order
    it sent them, from a seeded starting point."""
    rng = random.Random(f"{family}/{seed}")
    recorded = {}
    if family == "tools":
        from driftlock.events import path_excluded

        recorded = {tool: [r for r in requests if not path_excluded(r.path.split("?")[0], scenarios.EXCLUDED)]
                    for tool, requests in load_tools().items()}  # fmt: skip
    cursor: dict[str, int] = {}
    rate = knobs.rate or _log_uniform(rng, *RATES)
    drift = knobs.drift if knobs.drift is not None else rng.choice((0.0, 0.0, 0.5, 1.0))
    slots, episodes, drawn = layout(random.Random(rng.random()), knobs, caps={"latency_spike": SHOP_LATENCY_CAP})
    shoppers = scenarios.Traffic(random.Random(rng.random()))
    shoppers.weights["health"] = 0  # excluded paths are never events
    start = dict(shoppers.weights)
    requests: list[tuple[scenarios.Request, str | None]] = []
    for slot in slots:
        if drift:
            d = drift * slot.t
            shoppers.weights["product"] = round((1 - d) * start["product"] + d * start["search"])
            shoppers.weights["search"] = round((1 - d) * start["search"] + d * start["product"])
        if slot.own and slot.kind in scenarios.FAULTS:
            requests.append((shoppers.request(), scenarios.FAULTS[slot.kind]))
        elif slot.own and slot.kind in TOOL_KINDS and recorded:
            sent = recorded[TOOL_KINDS[slot.kind]]
            at = cursor.setdefault(slot.kind, rng.randrange(len(sent)))
            requests.append((replace(sent[at % len(sent)], kind=slot.kind), None))
            cursor[slot.kind] = at + 1
        elif slot.own and slot.kind:
            requests.append((scenarios.episode_request(slot.kind, rng), None))
        else:
            requests.append((shoppers.request(), None))
    settings = {"routes": None, "rate": round(rate, 2), "drift": drift, **drawn}
    return requests, slots, episodes, settings


def shop_generate(seed: int, knobs: Knobs, family: str = "shop-spans") -> LabelledStream:
    requests, slots, episodes, settings = shop_plan(seed, knobs, family)
    spans = Shop.get().run(requests)
    if len(spans) != len(requests):
        raise RuntimeError(f"{family} seed {seed}: {len(spans)} spans for {len(requests)} requests")
    rng = random.Random(f"{family}/{seed}/times")
    times = arrivals(rng, len(spans), settings["rate"])
    own = [s.kind if s.own else None for s in slots]
    return LabelledStream(
        family, seed, [ours(s) for s in spans], times, episodes, own, settings, naive=[naive(s) for s in spans]
    )


# -- the registry ------------------------------------------------------------------------------------------

_SDK = {
    f.name: f
    for f in (
        SdkFamily("sdk-logs", logs_ordinary, logs_anomalous),
        SdkFamily("sdk-api-metrics", api_ordinary, api_anomalous),
        SdkFamily("sdk-security", security_ordinary, security_anomalous),
        SdkFamily("sdk-transactions", transactions_ordinary, transactions_anomalous, catalogue="merchants"),
        *(SdkFamily(name, site_ordinary, site_anomalous, site=site) for name, site in SITES.items()),
    )
}
FAMILIES = ("shop-spans", *_SDK, "tools")
TUNED = tuple((f, s) for f in TUNED_FAMILIES for s in TUNED_SEEDS if not is_held_out(f, s))
HELD_OUT = tuple((f, s) for f in FAMILIES for s in (*TUNED_SEEDS, *HELD_OUT_SEEDS) if is_held_out(f, s))


def generate(family: str, seed: int, knobs: Knobs | None = None) -> LabelledStream:
    """The labelled stream of ``family`` for ``seed``; equal arguments give equal streams."""
    knobs = knobs or Knobs()
    if family in ("shop-spans", "tools"):
        return shop_generate(seed, knobs, family)
    if family not in _SDK:
        raise ValueError(f"unknown family {family!r}; expected one of {', '.join(FAMILIES)}")
    return _SDK[family].generate(seed, knobs)


def own_events(stream: LabelledStream, kind: str) -> Iterator[dict[str, Any]]:
    """The events of ``stream`` that are episodes' own events of ``kind``."""
    return (e for e, k in zip(stream.events, stream.own, strict=True) if k == kind)


# -- real tools: recorded against the demo shop on 127.0.0.1, replayed into ordinary traffic ---------------

TOOLS_DATA = Path(__file__).resolve().parent / "data" / "tools.jsonl"
TOOL_KINDS = {"scanner": "dirb", "sql_injection": "sqlmap", "credential_stuffing": "hydra"}
"""The ``tools`` family's episodes of these kinds replay what the tool sent; the other kinds are the
shop's own (faults, the new endpoint), as in ``shop-spans``."""
TOOL_RECORD_CAP = {"dirb": 500, "sqlmap": 400, "hydra": 200}
"""Requests kept per tool in the recording (the first ones), so it stays small."""


def load_tools(path: Path = TOOLS_DATA) -> dict[str, list[scenarios.Request]]:
    """The recorded requests of each tool, in the order the shop received them."""
    import json

    out: dict[str, list[scenarios.Request]] = {}
    for line in path.read_text().splitlines():
        row = json.loads(line)
        target = row["path"] + ("?" + row["query"] if row["query"] else "")
        out.setdefault(row["tool"], []).append(scenarios.Request(row["method"], target, row["form"] or None))
    return out


class _Recorder:
    """WSGI middleware: what the shop received (method, path, query, status, form fields, agent)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.tool = ""
        self.rows: list[dict[str, Any]] = []

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        import io
        from urllib.parse import parse_qsl

        form: dict[str, str] = {}
        if environ["REQUEST_METHOD"] == "POST":
            raw = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
            environ["wsgi.input"] = io.BytesIO(raw)
            if "urlencoded" in environ.get("CONTENT_TYPE", ""):
                form = dict(parse_qsl(raw.decode("latin-1"), keep_blank_values=True))
        status: list[int] = []

        def respond(line: str, headers: Any, exc_info: Any = None) -> Any:
            status.append(int(line.split()[0]))
            return start_response(line, headers, exc_info)

        result = self.app(environ, respond)
        path = quote(
            environ.get("PATH_INFO", "/").encode("latin-1").decode("utf-8", "replace"), safe="/:@!$&'()*+,;=-._~"
        )
        self.rows.append({
            "tool": self.tool, "method": environ["REQUEST_METHOD"], "path": path,
            "query": environ.get("QUERY_STRING", ""), "status": status[0] if status else None, "form": form,
            "user_agent": environ.get("HTTP_USER_AGENT", ""),
        })  # fmt: skip
        return result


def _run_bounded(cmd: list[str], timeout: float) -> bool:
    """Run a tool in its own session; kill its whole process group after ``timeout``. True if it ended by itself."""
    import signal
    import subprocess

    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)  # fmt: skip
    try:
        proc.wait(timeout=timeout)
        return True
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        return False


TOOL_TIMEOUTS = {"dirb": 120.0, "sqlmap": 240.0, "hydra": 20.0}


def record_tools(out: Path = TOOLS_DATA, tools: tuple[str, ...] = tuple(TOOL_TIMEOUTS)) -> dict[str, Any]:
    """Run dirb, sqlmap and hydra (Debian packages) against the demo shop served on 127.0.0.1 and
    write what it received, the first TOOL_RECORD_CAP requests of each tool, as JSON lines. Never any other
    host: the shop listens on 127.0.0.1 only, and every tool is given that address. Each tool is
    bounded (its word lists, and TOOL_TIMEOUTS)."""
    import json
    import logging
    import shutil
    import threading
    from socketserver import ThreadingMixIn
    from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

    os.environ.update(DJANGO_SETTINGS_MODULE="driftlock.demo.shop.settings", DRIFTLOCK_ENABLED="false")
    os.environ.pop("DRIFTLOCK_DEMO_FAULTS", None)
    from django.core.wsgi import get_wsgi_application

    class Server(ThreadingMixIn, WSGIServer):
        daemon_threads = True

    class Quiet(WSGIRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    recorder = _Recorder(get_wsgi_application())
    logging.getLogger("django.request").setLevel(logging.CRITICAL)  # 404s and 401s are the point
    server = make_server("127.0.0.1", 0, recorder, server_class=Server, handler_class=Quiet)
    port = server.server_address[1]
    base = f"http://127.0.0.1:{port}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    work = Path(tempfile.mkdtemp(prefix="driftlock-tools-"))
    users = work / "users.txt"
    users.write_text(
        "\n".join(f"{n}{i}" for n in ("admin", "root", "support", "test", "info") for i in range(6)) + "\n"
    )
    passwords = work / "passwords.txt"
    passwords.write_text("\n".join(["123456", "password", "qwerty", "letmein", "P@ssw0rd", "welcome1", "admin"]) + "\n")
    commands = {
        "dirb": ["dirb", base + "/", "/usr/share/dirb/wordlists/small.txt", "-r", "-S", "-w"],
        "sqlmap": ["sqlmap", "-u", base + "/search/?q=shoes", "--batch", "--level", "2", "--risk", "1",
                   "--flush-session", "--output-dir", str(work / "sqlmap"), "--disable-coloring"],
        "hydra": ["hydra", "-L", str(users), "-P", str(passwords), "-t", "4", "-s", str(port), "127.0.0.1",
                  "http-post-form", "/login/:username=^USER^&password=^PASS^:F=invalid credentials"],
    }  # fmt: skip
    summary: dict[str, Any] = {}
    kept: list[dict[str, Any]] = []
    try:
        for tool in tools:
            cmd = commands[tool]
            if shutil.which(cmd[0]) is None:
                raise SystemExit(f"{cmd[0]} is not installed: apt-get install {cmd[0]}")
            recorder.tool = tool
            before = len(recorder.rows)
            ended = _run_bounded(cmd, TOOL_TIMEOUTS[tool])
            rows = recorder.rows[before:]
            summary[tool] = {"requests": len(rows), "ended by itself": ended}
            kept += rows[: TOOL_RECORD_CAP[tool]]
    finally:
        server.shutdown()
        server.server_close()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(json.dumps(row, sort_keys=True) + "\n" for row in kept))
    return summary


if __name__ == "__main__":
    import sys

    if sys.argv[1:2] != ["record-tools"]:
        raise SystemExit("usage: python benchmarks/families.py record-tools [OUT.jsonl [TOOL ...]]")
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
    target = Path(sys.argv[2]) if len(sys.argv) > 2 else TOOLS_DATA
    print(record_tools(target, tuple(sys.argv[3:]) or tuple(TOOL_TIMEOUTS)))
