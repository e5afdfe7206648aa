"""An app whose middleware line has a misspelt setting: the server must refuse to start, naming it."""

from fastapi import FastAPI

from driftlock.fastapi import DriftlockMiddleware

app = FastAPI()
app.add_middleware(DriftlockMiddleware, api_key="your-api-key", stream_idd="fastapi-app")
