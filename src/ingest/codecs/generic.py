"""The `generic` push source (CONTRACT §3): one JSON report or an array of them, signed with
`X-Miaoxiang-Signature: sha256=<hex>`."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

from .json_report import decode_json_batch_indexed, decode_json_report
from .platform import PlatformResult
from .profiles import ProfileRegistry

_PREFIX = "sha256="


def hmac_signature(secret: str, body: bytes) -> str:
    """`sha256=` and the lowercase hex HMAC-SHA256 of the raw body keyed with the source's secret."""
    return _PREFIX + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def verify_generic(secret: str, body: bytes, header: str | None) -> bool:
    """Whether `header` is the body's signature (constant time; hex digits in either case)."""
    if header is None:
        return False
    given = header.strip()
    if given[: len(_PREFIX)].lower() != _PREFIX:
        return False
    expected = hmac_signature(secret, body)[len(_PREFIX) :]
    return hmac.compare_digest(given[len(_PREFIX) :].lower().encode("utf-8", "replace"), expected.encode("ascii"))


def verify_generic_push(secret: str, body: bytes, headers: Mapping[str, str], query: Mapping[str, str]) -> bool:
    """A generic push is signed by its `X-Miaoxiang-Signature` header."""
    return verify_generic(secret, body, headers.get("x-miaoxiang-signature"))


def decode_generic(body: bytes, *, received_ms: int, profiles: ProfileRegistry, profile: str | None) -> PlatformResult:
    """The readings of a generic push (canonical reports: no device profile applies); a rejected
    reading of an array is dead-lettered with its element's own text."""
    if body.lstrip().startswith(b"["):
        batch = decode_json_batch_indexed(body, received_ms=received_ms)
        return PlatformResult(readings=batch.readings, errors=batch.errors, raw_of=batch.element)
    return PlatformResult(readings=[decode_json_report(body, received_ms=received_ms)])
