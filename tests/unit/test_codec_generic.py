"""The generic push source's HMAC-SHA256 signature header."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from ingest.codecs.generic import hmac_signature, verify_generic

SECRET = "s3cret-密钥"
BODY = b'[{"device_id": "d1", "kind": "smoke", "event": "alarm"}]'


def test_signature_is_hex_hmac_sha256_of_the_raw_body() -> None:
    expected = hmac.new(SECRET.encode(), BODY, hashlib.sha256).hexdigest()
    assert hmac_signature(SECRET, BODY) == "sha256=" + expected


def test_verify_accepts_the_signature_in_either_case() -> None:
    sig = hmac_signature(SECRET, BODY)
    assert verify_generic(SECRET, BODY, sig)
    assert verify_generic(SECRET, BODY, "SHA256=" + sig[7:].upper() + " ")


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "sha256=",
        "sha1=abc",
        hmac_signature("other", BODY),
        hmac_signature(SECRET, BODY + b" "),
        "sha256=é" * 3,
        "sha256=\ud800",
    ],
)
def test_verify_refuses(header: str | None) -> None:
    assert verify_generic(SECRET, BODY, header) is False
