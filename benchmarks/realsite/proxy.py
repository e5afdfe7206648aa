"""The recording proxy: sits between a site's exporter and a real ``driftlock serve`` and keeps every
detect body it forwards, with its arrival time, the phase label in force and the server's answer."""

from __future__ import annotations

import gzip
import json
import threading
import time
import urllib.error
import urllib.request
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

MAX_BODY = 20 * 1024 * 1024
FORWARD_TIMEOUT = 60.0


class Recorder:
    """Appends one JSON line per detect call; the phase label is set by whoever runs the scenario."""

    def __init__(self, path: Path, upstream: str) -> None:
        self.path = path
        self.upstream = upstream.rstrip("/")
        self.phase = "quiet"
        self.calls = 0
        self.events = 0
        self._lock = threading.Lock()
        self._file = path.open("a", encoding="utf-8")

    def set_phase(self, phase: str) -> None:
        with self._lock:
            self.phase = phase

    def append(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, separators=(",", ":"))
        with self._lock:
            self._file.write(line + "\n")
            self._file.flush()
            self.calls += 1
            self.events += len(record["body"].get("events") or [])

    def close(self) -> None:
        with self._lock:
            self._file.close()


def _decoded(raw: bytes, encoding: str) -> bytes:
    if encoding == "gzip":
        return gzip.decompress(raw)
    if encoding == "deflate":
        return zlib.decompress(raw)
    return raw


def make_handler(recorder: Recorder) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # the exporter keeps its connection alive

        def log_message(self, *args: Any) -> None:
            pass

        def _reply(self, status: int, body: bytes, content_type: str = "application/json") -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            self._forward(b"", record=False)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY:
                self._reply(413, b'{"error":{"code":"payload_too_large","message":"recording proxy limit"}}')
                return
            raw = self.rfile.read(length)
            self._forward(raw, record=self.path.split("?")[0] == "/v1/detect")

        def _forward(self, raw: bytes, *, record: bool) -> None:
            arrived = time.time()
            phase = recorder.phase
            headers = {
                k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length", "connection")
            }
            request = urllib.request.Request(
                recorder.upstream + self.path,
                data=raw if self.command == "POST" else None,
                headers=headers,
                method=self.command,
            )
            try:
                with urllib.request.urlopen(request, timeout=FORWARD_TIMEOUT) as response:
                    status, answer = response.status, response.read()
            except urllib.error.HTTPError as exc:
                status, answer = exc.code, exc.read()
            except OSError as exc:
                self._reply(502, json.dumps({"error": {"code": "bad_gateway", "message": str(exc)}}).encode())
                return
            if record:
                try:
                    body = json.loads(_decoded(raw, self.headers.get("Content-Encoding", "identity")))
                    parsed = json.loads(answer) if answer else None
                except ValueError:
                    body, parsed = {"unparsed": True}, None
                recorder.append(
                    {"t": round(arrived, 3), "phase": phase, "status": status, "body": body, "answer": parsed}
                )
            self._reply(status, answer)

    return Handler


class RecordingProxy:
    """A threaded HTTP server on 127.0.0.1 (port 0: a free one) in a background thread."""

    def __init__(self, path: Path, upstream: str, port: int = 0) -> None:
        self.recorder = Recorder(path, upstream)
        self.server = ThreadingHTTPServer(("127.0.0.1", port), make_handler(self.recorder))
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> RecordingProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.recorder.close()
