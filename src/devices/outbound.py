"""Where the service's own outbound calls may go (CONTRACT §9 "Outbound policy").

Every outbound call (webhooks of escalation contacts and of unit contacts, channels, SMTP) may
reach only globally routable addresses: not loopback, private, link-local, shared
(100.64.0.0/10), multicast, reserved or unspecified, nor their IPv4-mapped, 6to4 or NAT64 IPv6
forms, unless `MIAOXIANG_OUTBOUND_ALLOW` lists a CIDR network holding the address or the host
name itself. Only `http` and `https` URLs.

The checks here are pure except `resolve_allowed` and `check_target`, which resolve a name
(injectable resolver). Senders connect only to an address `resolve_allowed` answered, on every
attempt, so a name that resolves elsewhere after it was configured is still refused. Standard
library only: `devices` is the bottom layer and alerting builds on it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
#: host, port -> the addresses the name resolves to (text, as `getaddrinfo` gives them)
Resolver = Callable[[str, int], Awaitable[list[str]]]

SCHEMES = ("http", "https")
SETTING = "MIAOXIANG_OUTBOUND_ALLOW"
#: the error class of an attempt refused by this policy (CONTRACT §9)
NOT_ALLOWED = "outbound address not allowed"

_SHARED = ipaddress.IPv4Network("100.64.0.0/10")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
#: IANA special-purpose blocks that not every Python release's `is_global` knows (IETF protocol
#: assignments, local-use NAT64, documentation, SRv6 SIDs)
_RESERVED: tuple[IPNetwork, ...] = tuple(ipaddress.ip_network(n) for n in (
    "192.0.0.0/24", "64:ff9b:1::/48", "3fff::/20", "5f00::/16"))
_KIND_ZH = {"unspecified": "未指定地址", "loopback": "回环地址", "link-local": "链路本地地址", "shared": "共享地址",
            "multicast": "组播地址", "private": "私有地址", "reserved": "保留地址"}
_LABEL = re.compile(r"(?!-)[a-z0-9_-]{1,63}(?<!-)")
_NUMERIC_V4 = re.compile(r"[0-9a-fx.]+", re.IGNORECASE)
_UNSAFE_URL = re.compile(r"[\\\s\x00-\x1f\x7f]")


class OutboundRefused(ValueError):
    """A URL or address the policy refuses; the message (Chinese, then English) names it and,
    for an address, the setting that would allow it."""


def address_kind(ip: IPAddress) -> str | None:
    """Why `ip` is not globally routable (`loopback`, `private`, `link-local`, `shared`,
    `multicast`, `reserved`, `unspecified`), or None when it is. IPv6 forms that carry an IPv4
    address (mapped, 6to4, NAT64) are judged by that address too."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return address_kind(ip.ipv4_mapped)
        if ip in _NAT64:  # DNS64 answers these for IPv4-only names; the gateway reaches the IPv4 address
            return address_kind(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
        if ip.sixtofour is not None and (kind := address_kind(ip.sixtofour)) is not None:
            return kind
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local"
    if ip in _SHARED:
        return "shared"
    if ip.is_multicast:
        return "multicast"
    if isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local:
        return "private"
    if ip.is_reserved or any(ip in net for net in _RESERVED if net.version == ip.version):
        return "reserved"
    if ip.is_private:
        return "private"
    return None if ip.is_global else "reserved"


def ip_literal(host: str) -> IPAddress | None:
    """The address a URL host names literally, including the IPv4 spellings `inet_aton` (and so
    `getaddrinfo`) accepts: `2130706433`, `0x7f.1`, `0177.0.0.1`, `127.1`; None for a name."""
    host = host.strip("[]")
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if _NUMERIC_V4.fullmatch(host):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def host_name(host: str) -> str:
    """A host name as compared: lower case, IDNA (punycode), no trailing dot. Raises
    OutboundRefused when it is no valid DNS name."""
    name = host.lower().removesuffix(".")
    try:
        name = name.encode("idna").decode("ascii") if not name.isascii() else name
    except UnicodeError:
        raise OutboundRefused(f"主机名无效 / invalid host name {host!r}") from None
    labels = name.split(".")
    if not name or len(name) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        raise OutboundRefused(f"主机名无效 / invalid host name {host!r}")
    return name


@dataclass(frozen=True, slots=True)
class OutboundPolicy:
    """Global addresses, plus the networks and host names of `MIAOXIANG_OUTBOUND_ALLOW`."""

    networks: tuple[IPNetwork, ...] = ()
    hosts: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def parse(cls, entries: Iterable[str]) -> OutboundPolicy:
        """From the setting's entries (CIDR networks, single addresses or host names); raises
        ValueError naming an entry that is neither."""
        networks: list[IPNetwork] = []
        hosts: set[str] = set()
        for entry in entries:
            text = entry.strip()
            try:
                networks.append(ipaddress.ip_network(text.strip("[]"), strict=False))
                continue
            except ValueError:
                pass
            if ip_literal(text) is not None or "/" in text:
                raise ValueError(f"{entry!r} is neither a CIDR network nor a host name")
            try:
                hosts.add(host_name(text))
            except OutboundRefused:
                raise ValueError(f"{entry!r} is neither a CIDR network nor a host name") from None
        return cls(tuple(networks), frozenset(hosts))

    def allows_host(self, host: str) -> bool:
        """The host name itself is listed (whatever it resolves to)."""
        try:
            return host_name(host) in self.hosts
        except OutboundRefused:
            return False

    def allows(self, ip: IPAddress) -> bool:
        """A global address, or one inside a listed network (an IPv4-mapped address also by its
        IPv4 form)."""
        if address_kind(ip) is None:
            return True
        forms = [ip, ip.ipv4_mapped] if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped else [ip]
        return any(form in net for form in forms for net in self.networks if form.version == net.version)

    def refuse(self, ip: IPAddress, host: str | None = None) -> OutboundRefused:
        """The refusal of `ip` (reached through the name `host`, when given)."""
        kind = address_kind(ip) or "reserved"
        via = f"{host} → " if host and host.strip("[]").lower() != str(ip) else ""
        return OutboundRefused(
            f"外呼地址不允许：{via}{ip} 是{_KIND_ZH[kind]}，如确需访问，请将其加入 {SETTING} / "
            f"{NOT_ALLOWED}: {via}{ip} is {kind}; list it in {SETTING} to allow it"
        )


@dataclass(frozen=True, slots=True)
class Target:
    """What a URL connects to: scheme, host (as the URL names it) and port."""

    scheme: str
    host: str
    port: int


def check_url(url: str, policy: OutboundPolicy) -> Target:
    """The pure check of a URL: an http(s) URL with a valid host which, when it is an address
    literal, the policy allows. A name is judged after resolution (`resolve_allowed`)."""
    if _UNSAFE_URL.search(url):
        raise OutboundRefused(
            f"URL 含有空白、反斜杠或控制字符 / the URL holds whitespace, a backslash or a control character: {url!r}")
    try:
        parts = urlsplit(url)
        port = parts.port
        host = parts.hostname
    except ValueError as e:
        raise OutboundRefused(f"URL 无效 / invalid URL {url!r}: {e}") from None
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise OutboundRefused(
            f"只支持 http 和 https 地址 / only http and https URLs may be called (got {scheme or 'none'!r})")
    if not host:
        raise OutboundRefused(f"URL 缺少主机 / the URL {url!r} names no host")
    ip = ip_literal(host)
    if ip is None:
        host_name(host)
    elif not policy.allows(ip):
        raise policy.refuse(ip, host)
    return Target(scheme, host, port or (443 if scheme == "https" else 80))


async def system_resolver(host: str, port: int) -> list[str]:
    """The system's answer for `host` (what a plain connect would use), in its order."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


async def resolve_allowed(
    host: str, port: int, policy: OutboundPolicy, resolve: Resolver = system_resolver
) -> list[str]:
    """The addresses of `host` a sender may connect to, in resolver order; connect to these
    and nothing else. Raises OutboundRefused when none is allowed, and the resolver's OSError
    (`socket.gaierror`) when the name does not resolve."""
    listed = policy.allows_host(host)
    allowed: list[str] = []
    refused: OutboundRefused | None = None
    for text in await resolve(host.strip("[]"), port):
        ip = ipaddress.ip_address(text.split("%")[0])
        if listed or policy.allows(ip):
            allowed.append(text)
        elif refused is None:
            refused = policy.refuse(ip, host)
    if not allowed:
        raise refused or OutboundRefused(f"主机 {host} 没有地址 / host {host} has no address")
    return allowed


async def check_target(
    url: str, policy: OutboundPolicy, resolve: Resolver = system_resolver, *, timeout_s: float = 3.0
) -> None:
    """The check when a target is configured: `check_url`, then every address a name resolves
    to now must be allowed (a name that does not resolve now is let through: each send checks
    again). Raises OutboundRefused naming the first refused address."""
    target = check_url(url, policy)
    if ip_literal(target.host) is not None or policy.allows_host(target.host):
        return
    try:
        async with asyncio.timeout(timeout_s):
            addresses = await resolve(target.host, target.port)
    except (OSError, TimeoutError):
        return
    for text in addresses:
        ip = ipaddress.ip_address(text.split("%")[0])
        if not policy.allows(ip):
            raise policy.refuse(ip, target.host)
