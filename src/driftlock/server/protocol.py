"""uvicorn's HTTP protocol for ``driftlock serve``: a request it cannot parse is answered with the API's error
envelope instead of plain text. Imported by uvicorn from :data:`driftlock.server.serve.HTTP_PROTOCOL`."""

from __future__ import annotations

import json
import time

from uvicorn.protocols.http.auto import AutoHTTPProtocol

__all__ = ["EnvelopeHTTPProtocol"]


class EnvelopeHTTPProtocol(AutoHTTPProtocol):  # type: ignore[valid-type,misc]
    def send_400_response(self, msg: str) -> None:
        error = {
            "code": "invalid_argument",
            "message": f"invalid HTTP request ({msg.rstrip('.')}): send an HTTP/1.1 request",
            "request_id": str(time.time_ns()),
        }
        body = json.dumps({"error": error}).encode()
        head = (
            "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
        )
        self.transport.write(head.encode() + body)
        self.transport.close()
