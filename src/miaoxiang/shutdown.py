"""Stopping `serve` and `demo` on SIGTERM or SIGINT.

The first signal cancels the command's task, so its contexts unwind innermost first: the
demo's simulator, its publishers, then the HTTP server (listeners closed, live streams ended,
requests given `GRACEFUL_SHUTDOWN_S`), then the service's lifespan (ingest drained and
acknowledged, background jobs, pool, embedded broker). A second signal during that forces exit.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

log = logging.getLogger("miaoxiang")

HANDLED = (signal.SIGINT, signal.SIGTERM)
T = TypeVar("T")


async def run_until_signal(
    main: Coroutine[Any, Any, T], *, on_force: Callable[[], object]
) -> tuple[T | None, str | None]:
    """Run `main` until it ends or a signal stops it; answer (its result, None) or (None, the
    signal's name) once it has unwound. A second signal calls `on_force` and exits at once with
    128 + the signal's number."""
    loop = asyncio.get_running_loop()
    work = asyncio.ensure_future(main)
    received: list[signal.Signals] = []

    def on_signal(sig: signal.Signals) -> None:
        received.append(sig)
        if len(received) == 1:
            log.info("%s received: stopping (a second signal forces exit)", sig.name)
            work.cancel()
            return
        log.warning("%s received again: forced exit before the shutdown finished", sig.name)
        on_force()
        os._exit(128 + sig)

    for sig in HANDLED:
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        return await work, None
    except asyncio.CancelledError:
        if not received:
            raise
        return None, received[0].name
    finally:
        for sig in HANDLED:
            loop.remove_signal_handler(sig)
