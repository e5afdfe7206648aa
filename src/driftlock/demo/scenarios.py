"""The demo's traffic: a shop's ordinary visitors, and labelled anomaly episodes mixed into them.

A plan is a list of phases. A normal phase is ordinary traffic; an episode phase is one kind of
trouble mixed with ordinary traffic (a scanner, injection probes, credential stuffing, a never-seen
endpoint), or ordinary traffic while the shop itself misbehaves (``fault``: a burst of server errors,
a latency spike).

Ordinary traffic is made by visitors in sessions (:class:`Visitors`), as real sites meet it: browsers
paginating and following links by popularity, searchers typing words from the shop's own texts (and
words it has never seen, and typos), members logging in with the form's CSRF token, filling a cart,
checking out and logging out, now and then mistyping a password; many visitors at once, their
requests interleaved, arriving at a rate that ramps up and then drifts through busier and quieter
stretches. Every request carries the time it leaves at and the visitor whose session (cookies, CSRF
token) it belongs to. :class:`Traffic`, independent draws from a fixed mix, is what
``benchmarks/families.py`` calls shop traffic. Seeded: equal seeds give equal plans.
"""

from __future__ import annotations

import dataclasses
import heapq
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass, field

from driftlock.demo.shop.catalog import PASSWORDS, PRODUCTS, USERS, words

__all__ = ["CSRF", "EXCLUDED", "KINDS", "Phase", "Request", "Traffic", "Visitors", "plan"]

KINDS = ("scanner", "sql_injection", "error_burst", "latency_spike", "credential_stuffing", "new_endpoint")
"""Every kind of episode, in the order a plan uses them."""

FAULTS = {"error_burst": "error", "latency_spike": "slow"}
EXCLUDED = ("/admin/", "/health/")
"""The shop's EXCLUDE_PATHS: requests there are not traced, so they are not events."""
CSRF = "{csrf}"
"""A form value the sender replaces with the CSRF token its visitor's session was given."""
ATTACKER = -1
"""The visitor a credential-stuffing tool is: one session that fetched the login form's token once."""

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
    visitor: int | None = None  # whose session (cookies, CSRF token) it is sent in; None: a fresh client
    at: float = 0.0  # seconds into the plan at which it leaves (the sender scales the plan to its duration)


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
    """Independent draws from a fixed mix: mostly browsing, some searching, a few carts, logins and
    checkouts (``benchmarks/families.py``'s shop traffic; the demo's is :class:`Visitors`)."""

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


_Step = tuple[float, Request]
"""(seconds the visitor waits before it, the request)."""

_NEW_WORDS = ("gift", "sale", "kids", "mens", "womens", "cheap", "organic", "wireless", "xl", "christmas",
              "birthday", "vegan", "refill", "discount", "set", "large", "mini", "pink", "grey", "camping")  # fmt: skip
_SYLLABLES = ("ka", "lo", "mi", "ne", "ru", "ta", "ve", "si", "po", "de", "ar", "en", "il", "or", "un", "ba",
              "st", "tr", "gr", "fe", "ho", "ly", "wi", "zo", "ex")  # fmt: skip


def _zipf(n: int, s: float = 1.1) -> list[float]:
    return [1 / (i + 1) ** s for i in range(n)]


def _think(rng: random.Random, median: float) -> float:
    """How long a person takes between two requests: log-normal around ``median`` seconds (halved: the
    demo's visitors are brisk, so a window of 50 events holds a dozen or two of them, not fifty)."""
    return 0.5 * median * math.exp(rng.gauss(0, 0.6))


class Visitors:
    """The shop's ordinary visitors, one session each, interleaved by time.

    Visitors arrive at a rate that ramps up over the first ``RAMP`` seconds and then drifts between
    quieter and busier stretches in turn (a new level every 6-14 s); each is a browser, a searcher
    or a member (``TYPES``) and leaves when its session ends. :meth:`request` hands out the next request
    of whichever visitor acts next, with its time. A health monitor checks ``/health/`` every second.
    """

    RATE = 36.0  # ordinary requests a second on the plan's clock, at a level of 1
    MEAN_SESSION = 7.0  # requests per session, roughly: arrivals per second are RATE / MEAN_SESSION
    RAMP = 15.0
    QUIET, BUSY = (0.4, 0.7), (1.3, 1.8)
    TYPES = {"browser": 48, "searcher": 28, "member": 24}

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.products = list(PRODUCTS)
        rng.shuffle(self.products)  # by popularity, most popular first
        self.product_weights = _zipf(len(self.products))
        self.words = words()
        rng.shuffle(self.words)
        self.word_weights = _zipf(len(self.words), 1.0)
        self.queue: list[tuple[float, int, int, Request, Iterator[_Step]]] = []
        self.visitors = 0
        self.sequence = 0
        self.arrival = 0.0
        self.health = 0.0
        self.knots = [(0.0, 1.0)]
        self.pending: Request | None = None

    # -- arrivals ---------------------------------------------------------------------------------

    def level(self, t: float) -> float:
        """The arrival rate's multiplier at ``t``: a ramp from 0.2, then a drifting level."""
        while self.knots[-1][0] <= t:
            last = self.knots[-1][0]
            low, high = self.QUIET if len(self.knots) % 2 else self.BUSY  # quieter and busier in turn
            self.knots.append((last + self.rng.uniform(6, 14), self.rng.uniform(low, high)))
        i = next(i for i, (at, _) in enumerate(self.knots) if at > t)
        (t0, v0), (t1, v1) = self.knots[i - 1], self.knots[i]
        drift = v0 + (v1 - v0) * (t - t0) / (t1 - t0)
        return drift * min(1.0, 0.2 + 0.8 * t / self.RAMP)

    def _arrive(self) -> None:
        self.visitors += 1
        kind = self.rng.choices(list(self.TYPES), list(self.TYPES.values()))[0]
        steps = {"browser": self._browser, "searcher": self._searcher, "member": self._member}[kind](self.visitors)
        self._schedule(self.arrival, self.visitors, steps)
        self.arrival += self.rng.expovariate(self.RATE / self.MEAN_SESSION * self.level(self.arrival))

    def _schedule(self, after: float, visitor: int, steps: Iterator[_Step]) -> None:
        step = next(steps, None)
        if step is not None:
            self.sequence += 1
            wait, request = step
            heapq.heappush(self.queue, (after + wait, self.sequence, visitor, request, steps))

    def peek(self) -> Request:
        if self.pending is None:
            self.pending = self._next()
        return self.pending

    def request(self) -> Request:
        """The next ordinary request, by time."""
        request, self.pending = self.peek(), None
        return request

    def _next(self) -> Request:
        for _ in range(10_000):  # bounded: each round either arrives a visitor or hands out a request
            first = self.queue[0][0] if self.queue else math.inf
            if self.health <= min(first, self.arrival):
                self.health += 1.0
                return Request("GET", "/health/", at=self.health - 1.0)
            if self.arrival <= first:
                self._arrive()
                continue
            at, _, visitor, request, steps = heapq.heappop(self.queue)
            self._schedule(at, visitor, steps)
            return dataclasses.replace(request, visitor=visitor, at=at)
        raise RuntimeError("no visitor acted in 10,000 rounds")  # unreachable: arrivals never stop

    # -- what visitors do -------------------------------------------------------------------------

    def _product(self) -> int:
        return self.rng.choices(self.products, self.product_weights)[0]

    def _word(self) -> str:
        return self.rng.choices(self.words, self.word_weights)[0]

    def _new_word(self) -> str:
        """A word the shop's texts do not have: a common shopping word, or one never seen before."""
        if self.rng.random() < 0.5:
            return self.rng.choice(_NEW_WORDS)
        return "".join(self.rng.choice(_SYLLABLES) for _ in range(self.rng.randint(2, 4)))

    def _typo(self, word: str) -> str:
        i = self.rng.randrange(len(word) - 1)
        how = self.rng.choice(("swap", "drop", "double"))
        if how == "swap":
            return word[:i] + word[i + 1] + word[i] + word[i + 2 :]
        if how == "drop":
            return word[:i] + word[i + 1 :]
        return word[: i + 1] + word[i:]

    def query(self, previous: str | None) -> str:
        """What a searcher types: the shop's words by popularity, a long tail of new words, typos, refinements."""
        r = self.rng.random()
        if previous and r < 0.25:
            return f"{previous} {self._word()}"  # narrowing the last search
        r = self.rng.random()
        if r < 0.64:
            return " ".join(self._word() for _ in range(self.rng.choices((1, 2, 3), (60, 32, 8))[0]))
        if r < 0.84:
            return self._new_word() if self.rng.random() < 0.6 else f"{self._new_word()} {self._word()}"
        return self._typo(self._word())

    def _browse(self, steps: int) -> Iterator[_Step]:
        """Product pages by popularity, the list page after page, a product's neighbours, now and then the cart."""
        rng = self.rng
        page, sort = 1, ""
        for _ in range(steps):
            r = rng.random()
            if r < 0.22:
                page = page + 1 if rng.random() < 0.6 else 1
                page = min(page, 6)
                if rng.random() < 0.1:
                    sort = "" if sort else "sort=price"
                query = "&".join(q for q in (f"page={page}" if page > 1 else "", sort) if q)
                yield _think(rng, 1.2), Request("GET", "/products/" + (f"?{query}" if query else ""))
            elif r < 0.85:
                yield _think(rng, 1.5), Request("GET", f"/products/{self._product()}/")
            elif r < 0.95:
                product = str(self._product())
                yield _think(rng, 1.0), Request("POST", "/cart/add/", {"product": product, "quantity": "1"})
                yield 0.05, Request("GET", "/cart/")  # the browser follows the redirect
            else:
                yield _think(rng, 1.0), Request("GET", "/")

    def _browser(self, visitor: int) -> Iterator[_Step]:
        rng = self.rng
        landing = rng.choices(("/", "/products/", "product"), (50, 20, 30))[0]
        yield 0.0, Request("GET", f"/products/{self._product()}/" if landing == "product" else landing)
        yield from self._browse(int(rng.expovariate(1 / 5)))

    def _searcher(self, visitor: int) -> Iterator[_Step]:
        rng = self.rng
        if rng.random() < 0.6:
            yield 0.0, Request("GET", "/")
        previous: str | None = None
        for _ in range(1 + int(rng.expovariate(1 / 1.2))):
            previous = self.query(previous)
            q = "/search/?q=" + previous.replace(" ", "+")
            yield _think(rng, 2.5), Request("GET", q)
            page = 1
            while page < 4 and rng.random() < (0.3 if page == 1 else 0.4):
                page += 1
                yield _think(rng, 1.5), Request("GET", f"{q}&page={page}")
            if rng.random() < 0.5:
                yield from self._browse(rng.randint(1, 3))

    def _member(self, visitor: int) -> Iterator[_Step]:
        rng = self.rng
        user = rng.choice(USERS)
        if rng.random() < 0.4:
            yield 0.0, Request("GET", "/")
        yield _think(rng, 0.8), Request("GET", "/login/")
        while rng.random() < 0.1:  # mistyped passwords
            wrong = rng.choice(("typo", user, user + "secret"))
            yield _think(rng, 3.0), Request("POST", "/login/", _login(user, wrong))
        yield _think(rng, 3.0), Request("POST", "/login/", _login(user, PASSWORDS[user]))
        yield 0.05, Request("GET", "/")
        yield from self._browse(1 + int(rng.expovariate(1 / 4)))
        if rng.random() < 0.6:
            yield _think(rng, 1.0), Request("GET", "/cart/")
            if rng.random() < 0.5:
                yield _think(rng, 2.0), Request("GET", "/checkout/")
        if rng.random() < 0.65:
            yield _think(rng, 1.0), Request("POST", "/logout/", {"csrfmiddlewaretoken": CSRF})
            yield 0.05, Request("GET", "/")


def _login(user: str, password: str) -> dict[str, str]:
    return {"csrfmiddlewaretoken": CSRF, "username": user, "password": password}


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
    ``episode`` requests, ``share`` of them the episode's own (all of them, for shop faults). The
    visitors' sessions run on through the episodes; an episode's own requests come on top of theirs."""
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise ValueError(f"unknown episode kind {unknown[0]!r}; expected one of {', '.join(KINDS)}")
    rng = random.Random(seed)
    visitors = Visitors(random.Random(rng.random()))
    phases = [Phase(None, tuple(visitors.request() for _ in range(warmup)))]
    for _ in range(rounds):
        order = list(kinds)
        rng.shuffle(order)
        for kind in order:
            phases.append(Phase(None, tuple(visitors.request() for _ in range(gap))))
            if kind in FAULTS:
                burst = tuple(_label(visitors.request(), kind) for _ in range(episode // 2))
                phases.append(Phase(kind, burst, fault=FAULTS[kind]))
            else:
                phases.append(Phase(kind, _mixed(kind, visitors, rng, episode, share)))
    phases.append(Phase(None, tuple(visitors.request() for _ in range(gap))))
    return phases


def _mixed(kind: str, visitors: Visitors, rng: random.Random, episode: int, share: float) -> tuple[Request, ...]:
    """``episode`` requests, ``share`` of them the episode's own, each own request timed between the
    ordinary requests around it. A credential-stuffing tool first fetches the login form's token."""
    own = [rng.random() < share for _ in range(episode)]
    out: list[Request] = []
    waiting: list[Request] = []

    def place(until: float) -> None:
        since = out[-1].at if out else until
        for n, request in enumerate(waiting, start=1):
            out.append(dataclasses.replace(request, at=since + (until - since) * n / (len(waiting) + 1)))
        waiting.clear()

    for is_own in own:
        if not is_own:
            ordinary = visitors.request()
            place(ordinary.at)
            out.append(ordinary)
        elif kind != "credential_stuffing":
            waiting.append(episode_request(kind, rng))
        elif not any(r.kind for r in out) and not waiting:
            waiting.append(Request("GET", "/login/", kind=kind, visitor=ATTACKER))
        else:
            attempt = episode_request(kind, rng)
            data = {"csrfmiddlewaretoken": CSRF, **(attempt.data or {})}
            waiting.append(dataclasses.replace(attempt, data=data, visitor=ATTACKER))
    place(visitors.peek().at)
    return tuple(out)


def _label(request: Request, kind: str) -> Request:
    return dataclasses.replace(request, kind=kind)


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
