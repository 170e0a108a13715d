"""``modelport edge agent``: the local endpoint on the event loop, the agent on a thread.

run(AgentConfig(...), host="127.0.0.1", port=8480)
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading

from modelport.edge.agent.agent import Agent, AgentConfig
from modelport.edge.agent.local import LocalApp
from modelport.edge.web import server


async def serve(agent: Agent, host: str, port: int, started=None) -> None:
    http, sock = server(LocalApp(agent), host, port)
    stop = threading.Event()
    worker = threading.Thread(target=agent.run, args=(stop,), name="edge-agent", daemon=True)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, lambda: setattr(http, "should_exit", True))
    task = asyncio.ensure_future(http.serve(sockets=[sock]))
    try:
        while not http.started and not task.done():
            await asyncio.sleep(0.01)
        if started is not None:
            started(sock.getsockname()[1])
        worker.start()
        await task
    finally:
        stop.set()
        sock.close()


def run(config: AgentConfig, host: str = "127.0.0.1", port: int = 8480) -> None:
    """Boot (serve the last good slot at once), then poll and serve until signalled."""
    agent = Agent(config)
    agent.boot()
    asyncio.run(serve(agent, host, port))
