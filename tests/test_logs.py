"""Log lines -> events (driftlock.logs): every format, the same body a span of the same request gives,
and an error that says what is wrong with a line that is not in its format."""

from __future__ import annotations

from typing import Any

import pytest

from driftlock.events import SpanRecord, span_to_event
from driftlock.logs import LogFormatError, agent_family, line_to_event, parse_logfmt

CHROME = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"
NGINX = '203.0.113.9 - - [06/Dec/2026:22:18:28 +0000] "{request}" {status} {size} "https://shop.test/" "{agent}"'


def nginx_line(request: str, status: int = 200, size: int = 612, agent: str = CHROME, extra: str = "") -> str:
    return NGINX.format(request=request, status=status, size=size, agent=agent) + extra


@pytest.mark.parametrize(
    ("target", "status", "ms"),
    [
        ("/api/orders/123/lines?page=2&token=s3cret", 200, 12.0),
        ("/users/550e8400-e29b-41d4-a716-446655440000", 404, 3.0),
        ("/checkout", 502, 2600.0),
        ("/search?q=red%20shoes", 200, 40.0),
    ],
)
def test_an_access_line_gives_the_body_a_server_span_of_the_same_request_gives(
    target: str, status: int, ms: float
) -> None:
    """What detection judges on logs is what it judges on spans: same method, route, status, query, duration."""
    start = 1_796_595_508_000_000_000  # 2026-12-06T22:18:28Z, the line's time
    span = SpanRecord(
        name="GET",
        kind="server",
        start_ns=start,
        end_ns=start + int(ms * 1e6),
        status="error" if status >= 500 else "unset",
        attributes={"http.method": "GET", "http.target": target, "http.status_code": status}
        | ({"error.type": str(status)} if status >= 500 else {}),
        resource={"service.name": "nginx"},
    )
    from_span = span_to_event(span)
    assert from_span is not None
    from_log = line_to_event(nginx_line(f"GET {target} HTTP/1.1", status, extra=f" {ms / 1000:.3f}"), "nginx")
    assert from_log["timestamp"] == from_span["timestamp"] == "2026-12-06T22:18:28.000Z"
    extra = {k: from_log["body"].pop(k) for k in ("bytes", "agent")}
    assert from_log["body"] == from_span["body"]
    assert from_log["type"] == "trace" and from_log["attributes"] == {"service": "nginx"}
    assert extra == {"bytes": "<1000B", "agent": "browser"}


def test_the_combined_format_without_a_request_time_has_no_duration_rather_than_a_made_up_one() -> None:
    body = line_to_event(nginx_line("POST /api/cart HTTP/2.0", 201, 27), "nginx")["body"]
    assert body == {
        "kind": "http",
        "method": "POST",
        "route": "/api/cart",
        "status": 201,
        "bytes": "<50B",
        "agent": "browser",
    }


def test_ids_in_paths_are_normalized_and_percent_escapes_read() -> None:
    body = line_to_event(nginx_line("GET /files/%7Eadmin/0f3a9c2e44b1d7a8/7 HTTP/1.1"), "nginx")["body"]
    assert body["route"] == "/files/~admin/{hex}/{int}"


def test_what_scanners_and_injections_send_reaches_the_event() -> None:
    """The parts of a request an attack changes are kept (scrubbed of secrets, cut when long)."""
    sqli = line_to_event(
        nginx_line(
            "GET /api/items?id=1%27%20AND%20SLEEP(5)--%20-&token=abc HTTP/1.1",
            200,
            40,
            "sqlmap/1.7.2#stable (https://sqlmap.org)",
        ),
        "nginx",
    )["body"]
    assert sqli["query"] == {"id": "1' AND SLEEP(5)-- -", "token": "[REDACTED]"}
    assert sqli["agent"] == "sqlmap"
    garbage = line_to_event(
        nginx_line("\\x16\\x03\\x01\\x02\\x00\\x01\\x00\\x01\\xFC\\x03\\x03", 400, 157, "-"), "nginx"
    )["body"]
    assert (garbage["method"], garbage["route"], garbage["status"], garbage["agent"]) == ("-", "-", 400, "-")


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (  # Apache common: no referer, no agent, "-" for no body
            '10.0.0.1 - frank [10/Oct/2000:13:55:36 -0700] "GET /apache_pb.gif HTTP/1.0" 304 -',
            {"kind": "http", "method": "GET", "route": "/apache_pb.gif", "status": 304, "agent": "-"},
        ),
        (  # Apache combined + %D (microseconds)
            '10.0.0.1 - - [10/Oct/2000:13:55:36 -0700] "GET /a HTTP/1.1" 500 2326 "-" "curl/8.5.0" 1523000',
            {
                "kind": "http",
                "method": "GET",
                "route": "/a",
                "status": 500,
                "duration": "<2.5s",
                "error": "500",
                "bytes": "<2500B",
                "agent": "curl",
            },
        ),
        (  # nginx "main_ext"-style key
            '10.0.0.1 - - [10/Oct/2000:13:55:36 -0700] "GET /b HTTP/1.1" 200 0 "-" "Googlebot/2.1" rt=0.031 uct="0.000"',
            {
                "kind": "http",
                "method": "GET",
                "route": "/b",
                "status": 200,
                "duration": "<50ms",
                "bytes": "0B",
                "agent": "googlebot",
            },
        ),
    ],
)
def test_apache_formats(line: str, expected: dict[str, Any]) -> None:
    event = line_to_event(line, "apache")
    assert event["body"] == expected
    assert event["timestamp"] == "2000-10-10T20:55:36.000Z"


def test_the_pages_nginx_json_log_record() -> None:
    """log-analysis.md's "Log Structure": nginx logging JSON (``log_format ... escape=json``)."""
    record = (
        '{"timestamp": "2025-01-01T12:00:00Z", "remote_addr": "192.168.1.1", "request": "GET /api/v1/users HTTP/1.1", '
        '"status": 200, "body_bytes_sent": 1024, "http_referer": "https://example.com", "http_user_agent": "Mozilla/5.0..."}'
    )
    event = line_to_event(record, "nginx")
    assert event["timestamp"] == "2025-01-01T12:00:00.000Z"
    assert event["body"] == {
        "kind": "http", "method": "GET", "route": "/api/v1/users", "status": 200, "bytes": "<2500B", "agent": "browser",
    }  # fmt: skip
    quoted = line_to_event(
        '{"time_local": "06/Dec/2026:22:18:28 +0000", "request_method": "GET", "request_uri": "/x/9?a=1", "status": "404", "request_time": "0.002"}',
        "nginx",
    )
    assert quoted["body"] == {
        "kind": "http",
        "method": "GET",
        "route": "/x/{int}",
        "status": 404,
        "duration": "<10ms",
        "query": {"a": "1"},
        "agent": "-",
    }


@pytest.mark.parametrize(
    ("line", "body", "timestamp"),
    [
        (
            "<34>Oct 11 22:14:15 mymachine su[230]: 'su root' failed for lonvick on /dev/pts/8",
            {
                "kind": "syslog",
                "severity": "crit",
                "app": "su",
                "message": "'su root' failed for lonvick on /dev/pts/8",
            },
            "-10-11T22:14:15.000Z",
        ),
        (
            '<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut="3"] An application event',
            {
                "kind": "syslog",
                "severity": "notice",
                "app": "evntslog",
                "msgid": "ID47",
                "message": "An application event",
            },
            "2003-10-11T22:14:15.003Z",
        ),
        (
            "2026-12-06T22:18:28.123456+01:00 web1 sshd[99]: Accepted publickey for deploy from 10.0.0.7 port 52144",
            {"kind": "syslog", "app": "sshd", "message": "Accepted publickey for deploy from 10.0.0.7 port 52144"},
            "2026-12-06T21:18:28.123Z",
        ),
    ],
)
def test_syslog(line: str, body: dict[str, Any], timestamp: str) -> None:
    event = line_to_event(line, "syslog")
    assert event["type"] == "log" and event["body"] == body
    assert event["timestamp"].endswith(timestamp)


def test_logfmt() -> None:
    event = line_to_event(
        'ts=2026-12-06T22:18:28Z level=error msg="payment \\"declined\\"" duration=1.2s retry', "logfmt"
    )
    assert event == {
        "type": "log",
        "timestamp": "2026-12-06T22:18:28Z",
        "body": {"level": "error", "msg": 'payment "declined"', "duration": "1.2s", "retry": True},
    }


@pytest.mark.parametrize(
    ("line", "fmt", "problem"),
    [
        ("GET / HTTP/1.1 200", "nginx", "not an access log line in the combined or common format"),
        ('{"request": "GET / HTTP/1.1"}', "nginx", "needs a numeric 'status'"),
        ('{"status": 200}', "nginx", "needs 'request' or 'method' and 'uri'"),
        ("[1, 2]", "nginx", "must be an object"),
        ("{oops", "json", "not valid JSON"),
        ("just words", "syslog", "not a syslog line"),
        ("<999>Oct 11 22:14:15 host app: x", "syslog", "priority <999> is out of range"),
        ('msg="never closed', "logfmt", "the quoted value of 'msg' is not closed"),
        ("words without pairs", "logfmt", "no key=value pair"),
    ],
)
def test_a_line_not_in_its_format_says_what_is_wrong(line: str, fmt: str, problem: str) -> None:
    with pytest.raises(LogFormatError, match=problem.replace("(", r"\(").replace("[", r"\[")):
        line_to_event(line, fmt)


def test_an_unknown_format_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match="unknown log format 'csv': use one of json, nginx, apache, syslog, logfmt"):
        line_to_event("a,b", "csv")


@pytest.mark.parametrize(
    ("agent", "family"),
    [
        (CHROME, "browser"),
        ("Mozilla/5.0 (Windows NT 10.0; rv:121.0) Gecko/20100101 Firefox/121.0", "browser"),
        ("Mozilla/4.0 (compatible; MSIE 6.0; Windows NT 5.1)", "browser"),  # dirb's default: looks like one
        ("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", "googlebot"),
        ("sqlmap/1.7.2#stable (https://sqlmap.org)", "sqlmap"),
        ("Fuzz Faster U Fool v1.1.0", "fuzz"),
        ("python-requests/2.31.0", "python-requests"),
        ("curl/8.5.0", "curl"),
        ("-", "-"),
        ("", "-"),
        ("() { :; }; /bin/bash -c id", "other"),  # shellshock probe
    ],
)
def test_agent_family(agent: str, family: str) -> None:
    assert agent_family(agent) == family


def test_parse_logfmt_keeps_bare_keys_and_empty_values() -> None:
    assert parse_logfmt("a= b=1 c") == {"a": "", "b": "1", "c": True}
