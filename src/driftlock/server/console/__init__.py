"""The web console of ``driftlock serve``: streams, timelines, incidents, and the actions people take on them.

Server-rendered (Jinja2) pages; the only JavaScript draws the plots with uPlot (MIT, shipped in ``static/``),
so the console works offline. Mount :func:`console_routes` at ``/`` beside the API's routes::

    routes = api_routes + console_routes(service, api_keys=keys, secret=secrets.token_bytes(32))
"""

from driftlock.server.console.pages import ConsoleService, console_routes

__all__ = ["ConsoleService", "console_routes"]
