"""Real attack tools, run as a person would, only against 127.0.0.1, each bounded in time and requests.

Debian packages: ffuf dirb gobuster sqlmap hydra wapiti (dirb's wordlists serve the scanners and hydra)."""

from __future__ import annotations

import http.cookiejar
import re
import urllib.request
from pathlib import Path
from typing import Any

COMMON = "/usr/share/dirb/wordlists/common.txt"  # 4,614 paths
PASSWORDS = "/usr/share/dirb/wordlists/others/best1050.txt"  # 1,050 common passwords
TOKEN = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')
TOOLS = ["ffuf", "gobuster", "dirb", "sqlmap", "hydra", "hydra-csrf", "wapiti"]


def _csrf(url: str) -> tuple[str, str]:
    """What a person does before a form brute force: open the login page once, keep its cookie and token."""
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    with opener.open(url, timeout=30) as response:
        page = response.read().decode("utf-8", "replace")
    cookie = next((c.value for c in jar if c.name == "csrftoken"), "")
    found = TOKEN.search(page)
    return cookie, found.group(1) if found else cookie


def command(tool: str, base: str, site: dict[str, Any], work: Path) -> list[str]:
    """The command line of ``tool`` against the site at ``base`` (http://127.0.0.1:PORT)."""
    port = base.rsplit(":", 1)[1]
    login = site["login"]
    who = ["-L", site["attack_users"]] if site.get("attack_users") else ["-l", site["attack_login"]]
    form = f"{login['user_field']}=^USER^&{login['password_field']}=^PASS^"
    if tool == "ffuf":
        return [
            "timeout",
            "90",
            "ffuf",
            "-u",
            f"{base}/FUZZ",
            "-w",
            COMMON,
            "-t",
            "10",
            "-maxtime",
            "75",
            "-fc",
            "301,404",
            "-s",
        ]
    if tool == "gobuster":
        return ["timeout", "90", "gobuster", "dir", "-u", base, "-w", COMMON, "-t", "10", "-b", "301,404", "-q", "-z"]
    if tool == "dirb":
        return ["timeout", "90", "dirb", f"{base}/", COMMON, "-S", "-r"]
    if tool == "sqlmap":
        return [
            "timeout",
            "90",
            "sqlmap",
            "-u",
            base + site["sqlmap_url"],
            "-p",
            site["sqlmap_param"],
            "--batch",
            "--flush-session",
            "--level",
            "2",
            "--output-dir",
            str(work / "sqlmap"),
        ]
    if tool == "hydra":  # no token: Django refuses every attempt with 403, which hydra is told is a failure
        return [
            "timeout",
            "60",
            "hydra",
            *who,
            "-P",
            PASSWORDS,
            "-s",
            port,
            "-t",
            "4",
            "-I",
            "127.0.0.1",
            "http-post-form",
            f"{login['path']}:{form}:F=403",
        ]
    if tool == "hydra-csrf":  # hydra cannot read a token; the cookie and token fetched once are replayed
        cookie, token = _csrf(base + login["path"])
        return [
            "timeout",
            "60",
            "hydra",
            *who,
            "-P",
            PASSWORDS,
            "-s",
            port,
            "-t",
            "4",
            "-I",
            "127.0.0.1",
            "http-post-form",
            f"{login['path']}:csrfmiddlewaretoken={token}&{form}:H=Cookie\\: csrftoken={cookie}:F={site['login_failed']}",
        ]
    if tool == "wapiti":
        return [
            "timeout",
            "100",
            "wapiti",
            "-u",
            f"{base}/",
            "--scope",
            "folder",
            "--max-scan-time",
            "80",
            "--flush-session",
            "-f",
            "txt",
            "-o",
            str(work / "wapiti"),
            "--verbose",
            "0",
        ]
    raise ValueError(f"unknown tool {tool!r}: one of {', '.join(TOOLS)}")
