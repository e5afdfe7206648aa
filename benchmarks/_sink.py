"""A server that answers at once: OTLP/HTTP (empty success) and Driftlock /v1/detect (no anomalies).

python -m uvicorn _sink:app --port 0      (from benchmarks/)
"""

from __future__ import annotations

import json

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


async def traces(request: Request) -> Response:
    await request.body()
    return Response(b"", media_type="application/x-protobuf")


async def detect(request: Request) -> Response:
    body = json.loads(await request.body())
    n = len(body.get("events", []))
    return JSONResponse(
        {
            "success": True,
            "stream_id": body.get("stream_id"),
            "total_events": n,
            "anomaly_count": 0,
            "anomalies": [],
            "status": "ready",
            "detection_ready": True,
        }
    )


app = Starlette(routes=[Route("/v1/traces", traces, methods=["POST"]), Route("/v1/detect", detect, methods=["POST"])])
