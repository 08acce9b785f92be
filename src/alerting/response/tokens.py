"""Responder page tokens (CONTRACT §9): at least 128 random bits, only their SHA-256 stored,
bound to one (alarm, responder) or, for a group robot, one (alarm, channel)."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

import asyncpg

#: 24 random bytes: 192 bits, URL-safe text of 32 characters
TOKEN_BYTES = 24

#: A new link for the binding, unless the binding's links were revoked (its responder or channel deleted).
_ISSUE = """
INSERT INTO response_tokens (token_hash, alarm_id, responder_id, group_channel)
SELECT $1, $2, $3, $4
 WHERE NOT EXISTS (SELECT 1 FROM response_tokens t WHERE t.alarm_id = $2 AND t.revoked_at IS NOT NULL
                     AND coalesce(t.responder_id, '') = coalesce($3, '')
                     AND coalesce(t.group_channel, '') = coalesce($4, ''))
RETURNING token_hash
"""


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


async def issue(
    conn: asyncpg.Connection, alarm_id: int, responder_id: str | None = None, group_channel: str | None = None
) -> str | None:
    """A new token for the binding; earlier ones stay live, so every message's link works. None
    when the binding's links were revoked."""
    if (responder_id is None) == (group_channel is None):
        raise ValueError("a token is bound to a responder or to a group channel")
    token = secrets.token_urlsafe(TOKEN_BYTES)
    stored = await conn.fetchval(_ISSUE, token_hash(token), alarm_id, responder_id, group_channel)
    return token if stored is not None else None


_ISSUE_MANY = """
INSERT INTO response_tokens (token_hash, alarm_id, responder_id, group_channel)
SELECT s.h, s.a, $3::text, $4::text FROM unnest($1::bytea[], $2::bigint[]) AS s (h, a)
 WHERE NOT EXISTS (SELECT 1 FROM response_tokens t WHERE t.alarm_id = s.a AND t.revoked_at IS NOT NULL
                     AND coalesce(t.responder_id, '') = coalesce($3::text, '')
                     AND coalesce(t.group_channel, '') = coalesce($4::text, ''))
RETURNING alarm_id
"""


async def issue_many(
    conn: asyncpg.Connection | asyncpg.Pool, alarm_ids: list[int], responder_id: str | None = None,
    group_channel: str | None = None,
) -> dict[int, str | None]:
    """`issue` for several alarms of one responder or group channel in one statement (a digest):
    each alarm's new token, None where the binding's links were revoked."""
    if (responder_id is None) == (group_channel is None):
        raise ValueError("a token is bound to a responder or to a group channel")
    made = {a: secrets.token_urlsafe(TOKEN_BYTES) for a in alarm_ids}
    stored = await conn.fetch(_ISSUE_MANY, [token_hash(t) for t in made.values()], list(made), responder_id,
                              group_channel)
    kept = {r["alarm_id"] for r in stored}
    return {a: (t if a in kept else None) for a, t in made.items()}


#: how long a link works after its alarm is resolved (CONTRACT §9)
AFTER_RESOLVED_S = 24 * 3600

_LOOKUP = """
SELECT t.token_hash, t.alarm_id, t.responder_id, t.group_channel
  FROM response_tokens t JOIN alarms a USING (alarm_id)
  LEFT JOIN responders r ON r.responder_id = t.responder_id
 WHERE t.token_hash = $1 AND t.revoked_at IS NULL
   AND (t.responder_id IS NULL OR r.deleted_at IS NULL)
   AND (t.group_channel IS NULL OR EXISTS (SELECT 1 FROM channels c WHERE c.name = t.group_channel))
   AND (a.resolved_at IS NULL OR a.resolved_at > now() - make_interval(secs => $2))
"""


@dataclass(frozen=True, slots=True)
class Binding:
    """What a live token stands for: one alarm, and a responder or a group robot channel."""

    token_hash: bytes
    alarm_id: int
    responder_id: str | None
    group_channel: str | None

    @property
    def group(self) -> bool:
        """A group robot's link: the person types a name."""
        return self.group_channel is not None


async def lookup(conn: asyncpg.Connection | asyncpg.Pool, token: str) -> Binding | None:
    """The binding of a live token; None when unknown, revoked, its responder deleted or its
    channel gone, or more than 24 h after its alarm was resolved."""
    if not 16 <= len(token) <= 128:
        return None
    row = await conn.fetchrow(_LOOKUP, token_hash(token), float(AFTER_RESOLVED_S))
    if row is None:
        return None
    return Binding(bytes(row["token_hash"]), row["alarm_id"], row["responder_id"], row["group_channel"])
