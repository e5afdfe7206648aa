"""The route template of a request (``/items/{item_id}``), found the way Starlette's router finds it.

For requests the router does not name in the scope: through mounts (whose prefix it adds:
``/api/items/{item_id}``), on Starlette versions before 1.0, and on a 404 (None).
"""

from __future__ import annotations

from collections.abc import Iterable, MutableMapping
from typing import Any

from starlette.routing import BaseRoute, Host, Match, Mount

__all__ = ["route_template"]

MAX_DEPTH = 8
"""Mounts inside mounts deeper than this are not searched (a cycle cannot loop forever)."""


def route_template(scope: MutableMapping[str, Any], app: Any) -> str | None:
    """The path template of the route of ``app`` (a Starlette app or router) that ``scope`` matches, or None."""
    routes = getattr(app, "routes", None)
    if not routes:
        return None
    return _match(routes, scope, "", 0)


def _match(routes: Iterable[BaseRoute], scope: MutableMapping[str, Any], prefix: str, depth: int) -> str | None:
    partial: str | None = None
    for route in routes:
        match, child = route.matches(scope)
        if match is Match.NONE:
            continue
        if isinstance(route, Mount | Host):
            inner = route.routes
            if match is Match.FULL and inner and depth < MAX_DEPTH:
                step = route.path if isinstance(route, Mount) else ""
                return _match(inner, {**scope, **child}, prefix + step, depth + 1)
            if isinstance(route, Host):
                continue
        path = prefix + str(getattr(route, "path", ""))
        if match is Match.FULL:
            return path
        if partial is None:  # the method differs (a 405): the route still names the request
            partial = path
    return partial
