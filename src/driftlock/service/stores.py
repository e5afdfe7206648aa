"""Where a store is opened, from a ``--db`` / ``EMBEDDED_DB`` value: ``:memory:``, a ``postgresql://`` (or
``postgres://``) URL, or the path of a SQLite file. The one place that decides which store a value names."""

from __future__ import annotations

import importlib
from pathlib import Path

from driftlock.service.store import MemoryStore, Store

__all__ = ["POSTGRES_EXTRA", "POSTGRES_SCHEMES", "check_db", "open_store"]

POSTGRES_SCHEMES = ("postgresql://", "postgres://")
POSTGRES_EXTRA = 'pip install "driftlock[postgres]"'


def check_db(db: str | Path | None) -> None:
    """ValueError (or ImportError naming the extra) for a value this installation cannot open."""
    text = str(db) if db is not None else ":memory:"
    if "://" not in text:
        return
    if not text.startswith(POSTGRES_SCHEMES):
        scheme = text.split("://", 1)[0]
        raise ValueError(
            f"--db {scheme}://... is not a store driftlock serve knows: give a SQLite file path, :memory:, "
            "or a postgresql:// URL"
        )
    missing = []
    for module in ("psycopg", "driftlock.service.postgres"):
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(module)
    if missing:
        raise ImportError(
            f"--db postgresql://... needs the PostgreSQL store ({', '.join(missing)} cannot be imported): "
            + POSTGRES_EXTRA
        )


def open_store(db: str | Path | None) -> Store:
    """The store ``db`` names (None: ``:memory:``), created or upgraded as it opens."""
    check_db(db)
    text = str(db) if db is not None else ":memory:"
    if text == ":memory:":
        return MemoryStore()
    if text.startswith(POSTGRES_SCHEMES):
        from driftlock.service.postgres import PostgresStore

        return PostgresStore(text)
    from driftlock.service.sqlite import SqliteStore

    Path(text).parent.mkdir(parents=True, exist_ok=True)
    return SqliteStore(text)
