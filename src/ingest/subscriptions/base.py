"""What a subscription consumer is, and what it hands each message to.

A consumer owns one connection to one platform queue. It runs until cancelled, reconnecting with
backoff, and hands every message to `Handle`, which returns once the message's readings (or its
dead letter) are committed. Only then does the consumer acknowledge (Pulsar ack, AMQP
`accepted`); when `Handle` raises, it gives the message back for redelivery (Pulsar negative ack,
AMQP `released`), never drops it. Flow control is bounded: at most `max_unacked` messages are
handed over and not yet acknowledged.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

#: (payload as delivered, a label of where it came from, e.g. "ctwing_mq:src/topic") -> after commit.
Handle = Callable[[bytes, str], Awaitable[None]]


@dataclass(slots=True)
class ConsumerState:
    """What `/metrics` and the push source's GET show of a consumer."""

    connected: bool = False
    messages: int = 0  # acknowledged after commit
    redelivered: int = 0  # given back after a failure
    lag: int | None = None  # backlog the broker reports, when it reports one
    last_error: str | None = None  # a class of error, never a secret


class Consumer(Protocol):
    state: ConsumerState

    async def run(self, handle: Handle) -> None:
        """Consume until cancelled; reconnect with backoff on any connection error."""
        ...
