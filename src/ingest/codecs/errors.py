"""The one exception a decoder raises, and the per-item failure of a multi-report payload."""

from __future__ import annotations

from dataclasses import dataclass


class DecodeError(Exception):
    """Bytes that are not a valid report; `reason` is one short plain sentence saying why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class BatchItemError:
    """One element of a multi-report payload that failed to decode; the others still count.

    `index` is the element's position in the payload, `raw` its bytes (re-serialised JSON for
    JSON elements, the original frame for binary ones) for the dead-letter store.
    """

    index: int
    reason: str
    raw: bytes
