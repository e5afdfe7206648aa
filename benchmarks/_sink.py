"""A server that answers at once: OTLP/HTTP (empty success) and Driftlock /v1/detect (no anomalies).

    SINK_MODE=healthy|slow|ratelimit python -m uvicorn _sink:app --port 0      (from benchmarks/)

``slow`` answers /v1/detect after 5 s; ``ratelimit`` answers it 429 with Retry-After: 2.
``GET /count`` tells how many events /v1/detect accepted.
"""

from __future__ import annotations

import asyncio
import json
import os

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

MODE = os.environ.get("SINK_MODE", "healthy")
accepted = 0


async def traces(request: Request) -> Response:
    await request.body()
    return Response(b"", media_type="application/x-protobuf")


async def detect(request: Request) -> Response:
    global accepted
    body = json.loads(await request.body())
    if MODE == "ratelimit":
        error = {"code": "rate_limit_exceeded", "message": "slow down", "retry_after_seconds": 2}
        return JSONResponse({"error": error}, status_code=429, headers={"Retry-After": "2"})
    if MODE == "slow":
        await asyncio.sleep(5)
    n = len(body.get("events", []))
    accepted += n
    answer = {"success": True, "stream_id": body.get("stream_id"), "total_events": n, "anomaly_count": 0}
    return JSONResponse({**answer, "anomalies": [], "status": "ready", "detection_ready": True})


async def count(request: Request) -> Response:
    return JSONResponse({"accepted": accepted})


app = Starlette(
    routes=[
        Route("/v1/traces", traces, methods=["POST"]),
        Route("/v1/detect", detect, methods=["POST"]),
        Route("/count", count),
    ]
)
