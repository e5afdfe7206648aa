"""Manual detection with no account: the embedded engine judges a window of login attempts.

    python examples/quickstart.py

With no API_KEY and no BASE_URL the client runs the CBAD engine in this process. Point it at a
local server with ``DRIFTLOCK_BASE_URL=http://127.0.0.1:8080`` (after ``driftlock serve``) or at
the hosted API with ``DRIFTLOCK_API_KEY``: the code does not change.
"""

from __future__ import annotations

import random

from driftlock import DriftlockSyncClient

ROUTES = ["", "products/", "products/<int:pk>/", "search/", "cart/", "checkout/"]


def request(rng: random.Random) -> dict[str, object]:
    route = rng.choice(ROUTES)
    body: dict[str, object] = {
        "method": "GET",
        "route": route,
        "status": 200,
        "duration": rng.choice(["<25ms", "<50ms"]),
    }
    if route == "search/":
        body["query"] = {"q": rng.choice(["shoes", "lamp", "desk", "mug"])}
    return {"type": "trace", "body": body}


def injection(rng: random.Random) -> dict[str, object]:
    payload = rng.choice(["' OR '1'='1", "1; DROP TABLE users--", "' UNION SELECT password FROM auth_user--"])
    return {"type": "trace", "body": {"method": "GET", "route": "search/", "status": 200, "duration": "<25ms",
                                      "query": {"q": payload}}}  # fmt: skip


def main() -> None:
    rng = random.Random(7)
    with DriftlockSyncClient() as client:
        normal = client.detect([request(rng) for _ in range(460)], stream_id="quickstart")
        print(f"normal traffic: {normal.total_events} events, {len(normal.anomalies)} anomalies")
        probe = [injection(rng) if i % 3 == 0 else request(rng) for i in range(30)]
        result = client.detect(probe, stream_id="quickstart")
    print(f"with injection probes: {len(result.anomalies)} anomalies")
    for anomaly in result.anomalies[:3]:
        m = anomaly.metrics
        print(f"  event {anomaly.index}: NCD {m.ncd:.2f}, p={m.p_value:.3f}: {anomaly.why}")


if __name__ == "__main__":
    main()
