"""The correlation core's decisions, written to the lifecycle in arrival order by one task.

The pipeline's batch handler only enqueues, so the `evt` lane keeps correlating while PostgreSQL
is slow or down: every raise decided meanwhile reaches the stream at once as `alarm_pending`
instead of waiting behind the first alarm's retries. Each batch gets a future that resolves once
its decisions are committed; the pipeline acknowledges the batch's messages only after that and
after its readings are written, so a crash loses nothing that was acknowledged. The queue is
bounded (`max_batches`): when it is full the handler waits, and backpressure reaches the
transports as before.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from alerting.lifecycle import AlarmLifecycle
from alerting.model import Decision

#: (decisions, their readings' receive times, shown as pending already, resolved once committed)
Job = tuple[list[Decision], list[int | None], bool, "asyncio.Future[None]"]


class DecisionWriter:
    def __init__(self, lifecycle: AlarmLifecycle, *, max_batches: int = 1000) -> None:
        self.lifecycle = lifecycle
        self.queue: asyncio.Queue[Job] = asyncio.Queue(max_batches)

    async def submit(self, decisions: Sequence[Decision], received_ms: Sequence[int | None]) -> asyncio.Future[None]:
        """Queue one batch's decisions; the answer resolves once they are committed."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        shown = self.lifecycle.db_down or not self.queue.empty()
        if shown:  # the writer is retrying or behind: show the raises now, not when their turn comes
            self.lifecycle.show_pending(list(decisions))
        await self.queue.put((list(decisions), list(received_ms), shown, done))
        return done

    async def run(self) -> None:
        """Write queued batches in order until cancelled."""
        while True:
            decisions, received, shown, done = await self.queue.get()
            try:
                await self.lifecycle.handle(decisions, received, shown=shown)
            except BaseException:
                done.cancel()  # stopping (or a bug, which stops the service): nothing is acknowledged
                raise
            if not done.done():
                done.set_result(None)
