"""``modelport ui``: the dashboard on its own, over the registry (no models loaded)."""

from __future__ import annotations

from typing import Annotated

import typer

from modelport.cli.common import console, registry


def ui(
    host: Annotated[
        str, typer.Option(help="Address to listen on (loopback unless you add API keys).")
    ] = "127.0.0.1",
    port: Annotated[
        int, typer.Option(help="HTTP port (0: any free one).", min=0, max=65535)
    ] = 8090,
    api_key: Annotated[
        list[str] | None,
        typer.Option(
            help="ROLE:KEY or NAME=ROLE:KEY, role 'infer' (reads) or 'admin' (also moves "
            "aliases); repeatable. Env MODELPORT_API_KEYS. No key: open, loopback only unless "
            "--allow-unauthenticated.",
            show_default=False,
        ),
    ] = None,
    allow_unauthenticated: Annotated[
        bool,
        typer.Option(help="Serve a non-loopback address without API keys (read-only)."),
    ] = False,
    admin_routes: Annotated[
        bool | None,
        typer.Option(
            "--admin-routes/--no-admin-routes",
            help="Alias moves and rollbacks from the pages (default: on, except on a server "
            "open to the network without keys).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Serve the web dashboard (models, versions, lineage, alias history) until Ctrl-C."""
    import asyncio

    import uvicorn

    from modelport.serving.auth import ApiKeys
    from modelport.serving.exposure import guard
    from modelport.serving.listener import listen, stop_on_signals, uvicorn_server
    from modelport.ui.app import UiApp

    reg = registry()
    keys = ApiKeys.parse([*(api_key or []), reg.settings.api_keys])
    keys = guard(host, keys, allow_unauthenticated, admin_routes)
    sock = listen(host, port)
    bound = sock.getsockname()[1]
    config = uvicorn.Config(
        UiApp(reg, keys),
        host=host,
        port=bound,
        lifespan="off",
        access_log=False,
        log_level="warning",
        server_header=False,
    )
    shown = f"[{host}]" if ":" in host else host
    auth = ", API keys required" if keys.required else ""
    if not keys.admin_routes:
        auth += ", read-only"
    console.print(f"dashboard on http://{shown}:{bound}/ui{auth}; Ctrl-C stops", highlight=False)
    server = uvicorn_server(config)  # SIGINT and SIGTERM stop it gracefully, exit 0

    async def run() -> None:
        stop_on_signals(server)
        await server.serve(sockets=[sock])

    try:
        try:
            import uvloop  # as serve: the faster loop when the serve extra is installed
        except ImportError:
            asyncio.run(run())
        else:
            uvloop.run(run())
    finally:
        sock.close()
    console.print("stopped")
