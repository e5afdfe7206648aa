"""What the set-up scripts share: the cache folder, one venv per application, text to fill the sites."""

from __future__ import annotations

import importlib
import inspect
import json
import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("DRIFTLOCK_BENCH_CACHE", Path.home() / ".cache" / "driftlock-bench"))
LOCUST_VENV = CACHE / "locust"
WORD = re.compile(r"[a-z]{4,14}")
TAG = re.compile(r"<[^>]+>")
# Modules whose docstrings are the sites' prose: real English, the same on every machine with this Python.
PROSE_MODULES = [
    "argparse",
    "asyncio",
    "collections",
    "concurrent.futures",
    "contextlib",
    "csv",
    "dataclasses",
    "datetime",
    "decimal",
    "difflib",
    "email.message",
    "fractions",
    "functools",
    "gzip",
    "heapq",
    "http.client",
    "http.cookiejar",
    "imaplib",
    "inspect",
    "ipaddress",
    "itertools",
    "json",
    "logging",
    "mailbox",
    "pathlib",
    "pickle",
    "queue",
    "random",
    "sched",
    "secrets",
    "shlex",
    "shutil",
    "smtplib",
    "socket",
    "statistics",
    "string",
    "subprocess",
    "tarfile",
    "tempfile",
    "textwrap",
    "threading",
    "timeit",
    "urllib.parse",
    "uuid",
    "wave",
    "zipfile",
]


def run(cmd: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    """Run a set-up step; its output is shown only when it fails."""
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done.stdout


def venv(name: str, *packages: str, with_driftlock: bool = True) -> Path:
    """``CACHE/name``: a venv with ``packages`` and, editable, the driftlock of this checkout."""
    path = CACHE / name
    if not (path / "bin" / "python").exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        run([sys.executable, "-m", "venv", str(path)])
    pip = [str(path / "bin" / "python"), "-m", "pip", "install", "-q"]
    run([*pip, *packages])
    if with_driftlock:
        run([*pip, "-e", str(REPO)])
    return path


def locust_venv() -> Path:
    return venv("locust", "locust>=2.20", with_driftlock=False)


def prose(count: int) -> list[tuple[str, str]]:
    """``count`` (title, text) pairs from standard-library docstrings, in a fixed order."""
    found: list[tuple[str, str]] = []
    titles: set[str] = set()
    for name in PROSE_MODULES:
        module = importlib.import_module(name)
        taken = 0
        for attr, value in sorted(vars(module).items()):
            doc = inspect.getdoc(value) if inspect.isclass(value) or inspect.isfunction(value) else None
            if not doc or len(doc) < 400 or attr.startswith("_") or getattr(value, "__module__", "") != name:
                continue
            title = doc.split("\n", 1)[0].strip().rstrip(".")[:80]
            if len(title) < 12 or title in titles or taken == 2:
                continue
            titles.add(title)
            found.append((title, doc))
            taken += 1
        if len(found) >= count:
            break
    return found[:count]


def words_in(texts: list[str]) -> list[str]:
    """The words a visitor reads on the pages (what they will type into the search box), in order."""
    seen: dict[str, None] = {}
    for text in texts:
        for word in WORD.findall(TAG.sub(" ", text).lower()):
            seen.setdefault(word, None)
    return list(seen)


def write_site(path: Path, site: dict[str, object]) -> None:
    path.write_text(json.dumps(site, indent=1), encoding="utf-8")
