"""Responder page tokens (CONTRACT §9): at least 128 random bits, only their SHA-256 stored,
bound to one (alarm, responder) or, for a group robot, one (alarm, channel)."""

from __future__ import annotations

import hashlib
import secrets

import asyncpg

#: 24 random bytes: 192 bits, URL-safe text of 32 characters
TOKEN_BYTES = 24

_ISSUE = """
INSERT INTO response_tokens (token_hash, alarm_id, responder_id, group_channel) VALUES ($1, $2, $3, $4)
ON CONFLICT (alarm_id, coalesce(responder_id, ''), coalesce(group_channel, '')) DO UPDATE
   SET token_hash = EXCLUDED.token_hash, created_at = now()
 WHERE response_tokens.revoked_at IS NULL
   AND NOT EXISTS (SELECT 1 FROM responder_actions a WHERE a.token_hash = response_tokens.token_hash)
RETURNING token_hash
"""


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


async def issue(
    conn: asyncpg.Connection, alarm_id: int, responder_id: str | None = None, group_channel: str | None = None
) -> str | None:
    """A new token for the binding (replacing the hash of an earlier one, whose link then dies);
    None when the binding's token is revoked or has recorded actions (it is kept as it is)."""
    if (responder_id is None) == (group_channel is None):
        raise ValueError("a token is bound to a responder or to a group channel")
    token = secrets.token_urlsafe(TOKEN_BYTES)
    stored = await conn.fetchval(_ISSUE, token_hash(token), alarm_id, responder_id, group_channel)
    return token if stored is not None else None
