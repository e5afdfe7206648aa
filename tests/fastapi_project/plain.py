"""A Starlette app (no FastAPI) with the middleware: routes, a mount, the context, the dependency called directly."""

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route

from driftlock.fastapi import DriftlockMiddleware, get_driftlock_client


async def hello(request):
    request.state.driftlock_context = {"greeting": True}
    return JSONResponse({"hello": request.path_params["name"]})


async def order(request):
    return JSONResponse({"order": request.path_params["order_id"]})


async def health(request):
    return JSONResponse({"status": "ok"})


async def detect(request):
    client = await get_driftlock_client(request)
    result = await client.detect([{"type": "ping", "body": {"n": 1}}], stream_id="plain-direct")
    return JSONResponse({"anomalies": len(result.anomalies)})


app = Starlette(
    routes=[
        Route("/health", health),
        Route("/hello/{name}", hello),
        Route("/detect", detect, methods=["POST"]),
        Mount("/shop", routes=[Route("/orders/{order_id:int}", order)]),
    ],
    middleware=[Middleware(DriftlockMiddleware, stream_id="plain-starlette", exclude_paths=["/health"])],
)
