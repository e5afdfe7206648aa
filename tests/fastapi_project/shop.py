"""A FastAPI app for the integration tests: the middleware line, a header login, context, a mount, an error.

Settings as a user writes them (keywords), BASE_URL from DRIFTLOCK_BASE_URL (the environment fills what the
keywords leave out). ``INCIDENT_LOG``, when set, is a file each process appends the incidents it is told to.
"""

import os
from typing import Annotated

from fastapi import Depends, FastAPI, Request
from starlette.authentication import AuthCredentials, AuthenticationBackend, SimpleUser
from starlette.middleware.authentication import AuthenticationMiddleware

import driftlock
from driftlock import DriftlockClient
from driftlock.fastapi import DriftlockMiddleware, get_driftlock_client


class HeaderLogin(AuthenticationBackend):
    async def authenticate(self, conn):
        name = conn.headers.get("x-user")
        if name:
            return AuthCredentials(["authenticated"]), SimpleUser(name)
        return None


app = FastAPI()
app.add_middleware(AuthenticationMiddleware, backend=HeaderLogin())
app.add_middleware(DriftlockMiddleware, api_key="your-api-key", stream_id="fastapi-shop", exclude_paths=["/health"])

api = FastAPI()


@api.get("/things/{thing_id}")
async def thing(thing_id: int):
    return {"thing": thing_id}


app.mount("/api", api)


@app.get("/items/{item_id}")
async def read_item(item_id: int):
    return {"item_id": item_id}


@app.get("/context")
async def context(request: Request):
    request.state.driftlock_context = {"user_tier": "gold", "feature": "checkout"}
    return {"ok": True}


@app.get("/boom")
async def boom():
    raise RuntimeError("the view failed")


@app.get("/health")
async def health():
    return {"status": "ok"}


@app.get("/sync/{item_id}")
def sync_item(item_id: int):
    return {"item_id": item_id}


clients: list[DriftlockClient] = []


@app.get("/client")
async def client_identity(client: Annotated[DriftlockClient, Depends(get_driftlock_client)]):
    clients.append(client)
    return {"pid": os.getpid(), "client": id(client), "base_url": client.config.base_url}


incident_log = os.environ.get("INCIDENT_LOG")
if incident_log:

    def tell(anomaly, span):
        with open(incident_log, "a") as out:
            mark = anomaly.incident
            incident, change = (mark.id, "opened" if mark.opened else "updated") if mark else (anomaly.id, "alarm")
            out.write(f"{os.getpid()} {span.stream_id} {incident} {change}\n")

    driftlock.add_anomaly_handler(tell)


class ShutdownReport:
    """Outside the app: after its lifespan ends, says whether the dependency's client was closed."""

    def __init__(self, inner):
        self.inner = inner

    async def __call__(self, scope, receive, send):
        await self.inner(scope, receive, send)
        if scope["type"] == "lifespan" and clients:
            closed = all(c._closed.is_set() for c in clients)
            left = getattr(app.state, "driftlock_client", None)
            print(f"shop: lifespan over, client closed={closed}, left on app.state={left is not None}", flush=True)


application = ShutdownReport(app)
