"""E-mail over SMTP with TLS always: `starttls` (submission, usually port 587) or `implicit`
(SMTPS, usually 465); certificates and host names verified against the system's trust store
(`Outbound.tls`), never a plain-text fallback.

The outbound policy applies as to HTTP: the host is resolved on every attempt and the client
connects to an allowed address of the answer (the next one if a connection fails), while TLS
verifies the certificate against the configured host name. The standard library's client runs
in a thread. A 4xx SMTP reply (421, 450, 451, 452: the server's temporary refusals), a
connection error or a timeout is worth a retry; a 5xx reply (535 bad credentials, 550 unknown
mailbox) fails with its code and is not retried.
"""

from __future__ import annotations

import asyncio
import smtplib
import socket
import ssl
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from alerting.response.channels.base import OK, Message, Recipient, SendResult
from alerting.response.http import NO_ADDRESS, PROVIDER, Outbound
from devices.outbound import NOT_ALLOWED, OutboundRefused, check_url, resolve_allowed


class SmtpConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    host: str
    port: int = Field(ge=1, le=65535)
    user: str = ""
    password: str = ""
    sender: str = Field(alias="from")
    tls: Literal["starttls", "implicit"]


class _Pinned(smtplib.SMTP):
    """An SMTP client that connects to a checked address while naming (and verifying TLS for)
    the configured host."""

    address = ""

    def pin(self, host: str, address: str) -> None:
        """Name `host` (EHLO, TLS verification) but connect to `address`."""
        self._host = host  # what `starttls` and `SMTP_SSL` verify the certificate against
        self.address = address

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        return socket.create_connection((self.address, port), timeout, self.source_address)


class _PinnedSSL(smtplib.SMTP_SSL, _Pinned):
    """SMTPS: `SMTP_SSL` wraps the socket `_Pinned` opened, verifying `host`."""


def email(config: SmtpConfig, message: Message, to: str) -> EmailMessage:
    mail = EmailMessage()
    mail["Subject"] = message.title
    mail["From"] = config.sender
    mail["To"] = to
    mail["Date"] = formatdate(localtime=False)
    mail["Message-ID"] = make_msgid(domain=config.sender.rpartition("@")[2] or None)
    mail.set_content(message.text)
    return mail


def _deliver(config: SmtpConfig, address: str, timeout_s: float, context: ssl.SSLContext, mail: EmailMessage) -> None:
    client: _Pinned
    if config.tls == "implicit":
        client = _PinnedSSL(timeout=timeout_s, context=context)
    else:
        client = _Pinned(timeout=timeout_s)
    client.pin(config.host, address)
    try:
        client.connect(config.host, config.port)
        client.ehlo()
        if config.tls == "starttls":
            client.starttls(context=context)  # raises when the server does not offer it: never plain text
            client.ehlo()
        if config.user:
            client.login(config.user, config.password)
        client.send_message(mail)
    finally:
        try:
            client.quit()
        except (smtplib.SMTPException, OSError):
            client.close()


def smtp_failure(error: Exception) -> SendResult:
    """The result of a failed delivery: the server's reply code, or the class of the error."""
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in error.recipients.values()]
        code = codes[0] if codes else 550
        return SendResult(False, PROVIDER, str(code), retry=400 <= code < 500)
    if isinstance(error, smtplib.SMTPResponseException):
        return SendResult(False, PROVIDER, str(error.smtp_code), retry=400 <= error.smtp_code < 500)
    if isinstance(error, ssl.SSLError | ssl.CertificateError | smtplib.SMTPNotSupportedError):
        return SendResult(False, "tls", retry=False)
    if isinstance(error, TimeoutError | socket.timeout):
        return SendResult(False, "timeout", retry=True)
    return SendResult(False, "refused", retry=True)


@dataclass(slots=True)
class Smtp:
    type: str = field(default="smtp", init=False)
    group: bool = field(default=False, init=False)

    config: SmtpConfig
    endpoint: str | None
    out: Outbound

    async def send(self, message: Message, recipient: Recipient) -> SendResult:
        if not recipient.email:
            return SendResult(False, NO_ADDRESS)
        c = self.config
        try:
            check_url(f"https://{f'[{c.host}]' if ':' in c.host else c.host}:{c.port}/", self.out.policy)  # a literal
            async with asyncio.timeout(self.out.timeout_s):
                addresses = await resolve_allowed(c.host, c.port, self.out.policy, self.out.resolve)
        except OutboundRefused:
            return SendResult(False, NOT_ALLOWED)
        except TimeoutError:
            return SendResult(False, "timeout", retry=True)
        except OSError:
            return SendResult(False, "dns", retry=True)
        mail = email(c, message, recipient.email)
        failure = SendResult(False, "refused", retry=True)
        for address in addresses:
            try:
                await asyncio.to_thread(_deliver, c, address, self.out.timeout_s, self.out.tls(), mail)
                return OK
            except (ConnectionRefusedError, smtplib.SMTPConnectError) as e:
                failure = smtp_failure(e)  # the next address may answer
            except (smtplib.SMTPException, OSError) as e:
                return smtp_failure(e)
        return failure
