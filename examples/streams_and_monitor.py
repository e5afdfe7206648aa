"""A buffered stream, a monitored function and the anomalies API, with no account.

    python examples/streams_and_monitor.py

With no API_KEY and no BASE_URL the client answers in process (the embedded engine); point it at
``driftlock serve`` with ``DRIFTLOCK_BASE_URL=http://127.0.0.1:8080`` and nothing else changes.
Events are pushed one at a time and sent 100 at a time; the 'anomaly' handler hears of each anomaly
as its batch comes back; every call of ``checkout`` becomes an event of its own stream.
"""

from __future__ import annotations

import asyncio
import random

from driftlock import Anomaly, DriftlockClient

ROUTES = ["", "products/", "products/<int:pk>/", "search/", "cart/", "checkout/"]
SCANS = ["/.env", "/wp-login.php", "/.git/config", "/phpmyadmin/index.php", "/xmlrpc.php"]


def request(rng: random.Random) -> dict[str, object]:
    return {"method": "GET", "route": rng.choice(ROUTES), "status": 200, "duration": rng.choice(["<25ms", "<50ms"])}


def scan(rng: random.Random) -> dict[str, object]:
    return {"method": "GET", "route": rng.choice(SCANS), "status": 404, "duration": "<25ms"}


async def main() -> None:
    rng = random.Random(3)
    client = DriftlockClient()
    found: list[Anomaly] = []

    @client.monitor(stream_id="example-calls")
    async def checkout(amount: float) -> str:
        if amount <= 0:
            raise ValueError("amount must be positive")
        return "paid"

    async with client.create_stream(stream_id="example-web", batch_size=100) as stream:

        @stream.on("anomaly")
        def on_anomaly(anomaly: Anomaly) -> None:
            found.append(anomaly)

        @stream.on("error")
        def on_error(error: Exception) -> None:
            print(f"detection error: {error}")

        for _ in range(460):
            await stream.push(request(rng))
        for i in range(40):
            await stream.push(scan(rng) if i % 2 == 0 else request(rng))

    print(f"pushed {stream.sent} events, {stream.dropped} dropped, {len(found)} anomalies heard by the handler")

    page = await client.anomalies.list(stream_id="example-web", limit=3)
    print(f"the API lists {page.total} anomalies for example-web")
    for anomaly in page.anomalies:
        print(f"- NCD {anomaly.ncd:.2f}: {anomaly.explanation[:80]}")
    if page.anomalies:
        await client.anomalies.feedback(page.anomalies[0].id or "", feedback_type="confirmed")
        print("feedback recorded for the newest")

    print(await checkout(12.5))
    try:
        await checkout(0)
    except ValueError as exc:
        print(f"checkout raised, as it should: {exc}")
    await client.aclose()  # sends what the monitor holds


if __name__ == "__main__":
    asyncio.run(main())
