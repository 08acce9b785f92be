"""The `generic` push source's signature (CONTRACT §3): `X-Miaoxiang-Signature: sha256=<hex>`."""

from __future__ import annotations

import hashlib
import hmac

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
