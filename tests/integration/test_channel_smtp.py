"""E-mail through a real SMTP server (aiosmtpd) with STARTTLS or implicit TLS, its certificate
issued by a test CA that only the test's `Outbound` trusts (verification stays on)."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from email import message_from_bytes
from email.header import decode_header, make_header
from typing import Any

import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP as SMTPServer
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session

from alerting.response.channels.base import Recipient, SendResult
from alerting.response.channels.registry import build_channel
from alerting.response.http import NO_ADDRESS, Outbound
from devices.outbound import NOT_ALLOWED, OutboundPolicy
from tests.integration.test_channel_robots import LOCAL, MESSAGE

HOST = "mail.miaoxiang.test"
PERSON = Recipient("张三", email="zhang@example.com")


class Inbox:
    def __init__(self) -> None:
        self.envelopes: list[Envelope] = []
        self.logins: list[bytes] = []

    async def handle_DATA(self, server: SMTPServer, session: Session, envelope: Envelope) -> str:
        self.envelopes.append(envelope)
        return "250 Message accepted for delivery"

    def authenticate(self, server: SMTPServer, session: Session, envelope: Envelope, mechanism: str,
                     auth_data: Any) -> AuthResult:
        ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (b"mx", b"pw")
        self.logins.append(auth_data.login if isinstance(auth_data, LoginPassword) else b"")
        return AuthResult(success=ok, handled=False)


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def server_context(ca: trustme.CA, name: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(name).configure_cert(context)
    return context


def client_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def smtp_server(tls: str | None, context: ssl.SSLContext | None) -> Iterator[tuple[int, Inbox]]:
    inbox = Inbox()
    # implicit TLS: aiosmtpd does not see the session as encrypted, so AUTH is not held back for it
    options: dict[str, Any] = {"authenticator": inbox.authenticate, "auth_require_tls": tls == "starttls"}
    if tls == "starttls":
        options |= {"tls_context": context, "require_starttls": True}
    elif tls == "implicit":
        options |= {"ssl_context": context}
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port, server_hostname="127.0.0.1", **options)
    controller.start()
    try:
        yield port, inbox
    finally:
        controller.stop()


async def to_loopback(host: str, port: int) -> list[str]:
    return ["127.0.0.1"]


def config(port: int, tls: str, password: str = "pw") -> dict[str, Any]:
    return {"host": HOST, "port": port, "user": "mx", "password": password, "from": "alarm@miaoxiang.test",
            "tls": tls}


async def send(ca: trustme.CA, cfg: dict[str, Any], recipient: Recipient = PERSON,
               policy: OutboundPolicy = LOCAL) -> SendResult:
    async with Outbound(policy, timeout_s=3.0, resolve=to_loopback, ssl_context=client_context(ca)) as out:
        channel = build_channel("smtp", cfg, None, out)
        assert channel.type == "smtp" and not channel.group
        return await channel.send(MESSAGE, recipient)


@pytest.mark.parametrize("tls", ["starttls", "implicit"])
async def test_mail_delivered_over_verified_tls(ca: trustme.CA, tls: str) -> None:
    with smtp_server(tls, server_context(ca, HOST)) as (port, inbox):
        assert await send(ca, config(port, tls)) == SendResult(True)
    [envelope] = inbox.envelopes
    assert envelope.mail_from == "alarm@miaoxiang.test" and envelope.rcpt_tos == ["zhang@example.com"]
    mail = message_from_bytes(envelope.original_content or b"")
    assert str(make_header(decode_header(mail["Subject"]))) == MESSAGE.title
    assert MESSAGE.text in mail.get_payload(decode=True).decode()


@pytest.mark.parametrize("tls", ["starttls", "implicit"])
async def test_wrong_password_fails_with_the_server_code(ca: trustme.CA, tls: str) -> None:
    with smtp_server(tls, server_context(ca, HOST)) as (port, inbox):
        assert await send(ca, config(port, tls, password="nope")) == SendResult(False, "provider", "535")
    assert inbox.envelopes == []


@pytest.mark.parametrize("tls", ["starttls", "implicit"])
async def test_certificate_for_another_name_is_refused(ca: trustme.CA, tls: str) -> None:
    with smtp_server(tls, server_context(ca, "other.example")) as (port, inbox):
        assert await send(ca, config(port, tls)) == SendResult(False, "tls")
    assert inbox.logins == [] and inbox.envelopes == []


async def test_untrusted_ca_is_refused(ca: trustme.CA) -> None:
    with smtp_server("starttls", server_context(trustme.CA(), HOST)) as (port, inbox):
        assert await send(ca, config(port, "starttls")) == SendResult(False, "tls")
    assert inbox.logins == []


async def test_server_without_starttls_gets_no_credentials(ca: trustme.CA) -> None:
    with smtp_server(None, None) as (port, inbox):
        assert await send(ca, config(port, "starttls")) == SendResult(False, "tls")
    assert inbox.logins == [] and inbox.envelopes == []


async def test_outside_the_policy_no_connection_is_made(ca: trustme.CA) -> None:
    with smtp_server("starttls", server_context(ca, HOST)) as (port, inbox):
        assert await send(ca, config(port, "starttls"), policy=OutboundPolicy()) == SendResult(False, NOT_ALLOWED)
        literal = {**config(port, "starttls"), "host": "10.0.0.25"}
        assert await send(ca, literal) == SendResult(False, NOT_ALLOWED)
    assert inbox.logins == [] and inbox.envelopes == []


async def test_closed_port_is_retried_and_no_email_is_not(ca: trustme.CA) -> None:
    assert await send(ca, config(free_port(), "starttls")) == SendResult(False, "refused", retry=True)
    assert await send(ca, config(free_port(), "starttls"), Recipient("李四")) == SendResult(False, NO_ADDRESS)
