"""The outbound policy (CONTRACT §9): which URLs and addresses the service's own calls may reach.

IPv4 is compared address by address with the IANA special-purpose registry written out here
(independent of `ipaddress`'s own notion of "global"); every IPv4 spelling `inet_aton` accepts is
judged as the address it names; IPv6 forms carrying an IPv4 address are judged by it.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alerting.notify import ERROR_CLASSES, shown_detail
from devices.outbound import (
    NOT_ALLOWED,
    SETTING,
    OutboundPolicy,
    OutboundRefused,
    Resolver,
    address_kind,
    check_target,
    check_url,
    ip_literal,
    resolve_allowed,
)
from miaoxiang.settings import SettingsError, load_settings

V4 = ipaddress.IPv4Address
#: IANA IPv4 special-purpose blocks that are not globally reachable, plus multicast and 240/4
#: (all of 192.0.0.0/24 is refused, its two anycast addresses included: no webhook lives there)
IANA_V4 = [ipaddress.IPv4Network(n) for n in (
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
    "192.0.0.0/24", "192.0.2.0/24", "192.168.0.0/16", "198.18.0.0/15", "198.51.100.0/24",
    "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4",
)]
IANA_V6 = [ipaddress.IPv6Network(n) for n in (
    "::1/128", "::/128", "100::/64", "2001::/23", "2001:db8::/32", "fc00::/7", "fe80::/10",
    "ff00::/8", "64:ff9b:1::/48", "3fff::/20", "5f00::/16", "fec0::/10",
)]
NONE = OutboundPolicy()
v4s = st.integers(0, 2**32 - 1).map(V4)


def inside(networks: list[ipaddress.IPv4Network] | list[ipaddress.IPv6Network]) -> st.SearchStrategy[Any]:
    """An address of one of `networks`."""
    return st.sampled_from(networks).flatmap(lambda n: st.integers(0, n.num_addresses - 1).map(lambda i: n[i]))


def iana_global(ip: ipaddress.IPv4Address) -> bool:
    return not any(ip in net for net in IANA_V4)


def spellings(ip: ipaddress.IPv4Address) -> list[str]:
    """Ways to write `ip` in a URL host that `inet_aton` (so `getaddrinfo`) reads as it."""
    n = int(ip)
    a, b, c, d = ip.packed
    return [str(ip), str(n), hex(n), f"0{n:o}", f"{a}.{(b << 16) | (c << 8) | d}", f"{a}.{b}.{(c << 8) | d}",
            ".".join(f"0x{x:x}" for x in (a, b, c, d)), ".".join(f"0{x:o}" for x in (a, b, c, d))]


@settings(max_examples=2000)
@given(v4s)
def test_ipv4_is_refused_exactly_when_iana_says_not_global(ip: ipaddress.IPv4Address) -> None:
    assert (address_kind(ip) is None) == iana_global(ip)
    assert NONE.allows(ip) == iana_global(ip)


@settings(max_examples=300)
@given(st.one_of(v4s, inside(IANA_V4)))
def test_every_ipv4_spelling_is_judged_as_the_address_it_names(ip: ipaddress.IPv4Address) -> None:
    for host in spellings(ip):
        assert V4(socket.inet_aton(host)) == ip  # the premise: the resolver reads it so
        assert ip_literal(host) == ip
        url = f"http://{host}:8080/hook"
        if iana_global(ip):
            assert check_url(url, NONE).host == host
        else:
            with pytest.raises(OutboundRefused, match=f"{ip}.*{SETTING}"):
                check_url(url, NONE)
            assert check_url(url, OutboundPolicy.parse([f"{ip}"])).port == 8080


@settings(max_examples=500)
@given(v4s)
def test_ipv6_forms_carrying_an_ipv4_address_are_judged_by_it(ip: ipaddress.IPv4Address) -> None:
    mapped = ipaddress.IPv6Address(f"::ffff:{ip}")
    nat64 = ipaddress.IPv6Address(f"64:ff9b::{ip}")
    sixtofour = ipaddress.IPv6Address((0x2002 << 112) | (int(ip) << 80) | 1)
    assert address_kind(mapped) == address_kind(ip)
    for form in (nat64, sixtofour):
        assert (address_kind(form) is None) == iana_global(ip)
    if not iana_global(ip):  # allowing the IPv4 address allows its mapped form, which reaches it
        assert not NONE.allows(mapped) and OutboundPolicy.parse([str(ip)]).allows(mapped)
        with pytest.raises(OutboundRefused):
            check_url(f"http://[::ffff:{ip}]/", NONE)


@settings(max_examples=500)
@given(inside(IANA_V6))
def test_ipv6_special_purpose_addresses_are_refused(ip: ipaddress.IPv6Address) -> None:
    assert address_kind(ip) is not None and not NONE.allows(ip)
    assert OutboundPolicy.parse([f"{ip}/128"]).allows(ip)


@settings(max_examples=300)
@given(st.integers(0, 2**96 - 1))
def test_ipv6_unicast_of_the_internet_is_allowed(low: int) -> None:
    ip = ipaddress.IPv6Address((0x2400 << 112) | low)  # 2400::/16, APNIC unicast
    assert address_kind(ip) is None and NONE.allows(ip)


@pytest.mark.parametrize(("url", "shown"), [
    ("http://127.0.0.1/", "127.0.0.1 is loopback"),
    ("http://localhost:8080/", "localhost → 127.0.0.1 is loopback"),  # resolved (check_target)
    ("http://LOCALHOST./", "localhost. → 127.0.0.1 is loopback"),
    ("http://[::1]:9/x", "::1 is loopback"),
    ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is link-local"),
    ("http://100.100.100.200/latest/meta-data/", "100.100.100.200 is shared"),  # Alibaba Cloud metadata
    ("http://2130706433/", "2130706433 → 127.0.0.1 is loopback"),
    ("http://0x7f.1/", "0x7f.1 → 127.0.0.1 is loopback"),
    ("http://0/", "0 → 0.0.0.0 is unspecified"),
    ("http://example.com@127.0.0.1/", "127.0.0.1 is loopback"),  # userinfo: the host is after the @
    ("http://user:pw@10.1.2.3:80/", "10.1.2.3 is private"),
    ("http://[::ffff:127.0.0.1]/", "::ffff:127.0.0.1 → ::ffff:7f00:1 is loopback"),
    ("http://[::ffff:7f00:1]/", "::ffff:7f00:1 is loopback"),
    ("http://[fe80::1]/", "fe80::1 is link-local"),
    ("http://224.0.0.1/", "224.0.0.1 is multicast"),
    ("http://192.168.1.1/", "192.168.1.1 is private"),
    ("https://[fd00::1]/", "fd00::1 is private"),
])
async def test_internal_targets_are_refused_naming_the_address_and_the_setting(url: str, shown: str) -> None:
    async def resolve(host: str, port: int) -> list[str]:
        assert host.lower().rstrip(".") == "localhost"
        return ["127.0.0.1"]

    with pytest.raises(OutboundRefused) as e:
        await check_target(url, NONE, resolve)
    assert shown in str(e.value) and SETTING in str(e.value)
    assert str(e.value).startswith("外呼地址不允许")


@pytest.mark.parametrize("url", [
    "file:///etc/passwd", "gopher://127.0.0.1:6379/_INFO", "ftp://example.com/", "dict://x:11211/",
    "javascript:alert(1)", "//example.com/hook", "example.com/hook", "",
    "http://a.com\\@127.0.0.1/", "http://exa mple.com/", "http://example.com\n@127.0.0.1/",
    "http:///path-only", "http://example.com:99999/", "http://exa%2fmple.com/", "http://-bad-.com/",
    "http://user:pw@10.1.2.3:80@/",
])
def test_other_schemes_and_malformed_urls_are_refused(url: str) -> None:
    with pytest.raises(OutboundRefused):
        check_url(url, OutboundPolicy.parse(["0.0.0.0/0", "::/0"]))  # not even an allow-everything list helps


@pytest.mark.parametrize("url", ["https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=k", "HTTP://Example.COM./h",
                                 "http://例子.测试/h", "https://8.8.8.8/", "https://[2400:3200::1]:8443/"])
def test_public_http_urls_pass_the_pure_check(url: str) -> None:
    check_url(url, NONE)


def test_the_allow_list_takes_networks_addresses_and_host_names() -> None:
    policy = OutboundPolicy.parse(
        ["10.8.0.0/16", " 127.0.0.1 ", "[::1]", "fd00::/8", "SMS-Gateway.Internal.", "例子.测试"])
    assert [str(n) for n in policy.networks] == ["10.8.0.0/16", "127.0.0.1/32", "::1/128", "fd00::/8"]
    assert policy.hosts == {"sms-gateway.internal", "xn--fsqu00a.xn--0zwm56d"}
    assert policy.allows(V4("10.8.200.1")) and not policy.allows(V4("10.9.0.1"))
    assert policy.allows(ipaddress.IPv6Address("fd12::1")) and not policy.allows(ipaddress.IPv6Address("fe80::1"))
    assert policy.allows_host("sms-gateway.internal.") and policy.allows_host("SMS-GATEWAY.internal")
    assert not policy.allows_host("x.sms-gateway.internal") and not policy.allows_host("sms-gateway.internal.evil.com")
    for bad in ("http://10.0.0.1/", "10.0.0.0/33", "a b", "", "1.2.3.4:80", "*.internal"):
        with pytest.raises(ValueError, match="neither a CIDR network nor a host name"):
            OutboundPolicy.parse([bad])


def test_the_setting_is_a_json_list_checked_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings().outbound_allow == []
    monkeypatch.setenv(SETTING, '["127.0.0.1", "10.8.0.0/16", "sms.internal"]')
    assert load_settings().outbound_allow == ["127.0.0.1", "10.8.0.0/16", "sms.internal"]
    monkeypatch.setenv(SETTING, '["http://sms.internal/"]')
    with pytest.raises(SettingsError, match=SETTING):
        load_settings()


def resolver(answers: dict[str, list[str]]) -> Resolver:
    """A resolver answering from `answers` (a name absent does not resolve)."""
    async def resolve(host: str, port: int) -> list[str]:
        if host not in answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return answers[host]
    return resolve


async def test_a_name_may_reach_only_its_allowed_addresses_in_resolver_order() -> None:
    public6 = "2606:2800:21f:cb07:6820:80da:af6b:8b2c"
    dns = resolver({"mixed.example": ["127.0.0.1", "93.184.215.14", "::1", public6],
                    "inside.example": ["10.0.0.5", "169.254.169.254"], "gw.internal": ["10.8.0.9"]})
    assert await resolve_allowed("mixed.example", 443, NONE, dns) == ["93.184.215.14", public6]
    with pytest.raises(OutboundRefused, match=re.escape("inside.example → 10.0.0.5 is private")):
        await resolve_allowed("inside.example", 443, NONE, dns)
    listed = OutboundPolicy.parse(["gw.internal"])  # a listed name reaches whatever it resolves to ...
    assert await resolve_allowed("gw.internal", 80, listed, dns) == ["10.8.0.9"]
    with pytest.raises(OutboundRefused):  # ... and only that name reaches it
        await resolve_allowed("inside.example", 80, listed, dns)
    with pytest.raises(socket.gaierror):
        await resolve_allowed("nowhere.example", 80, NONE, dns)


async def test_configuring_a_name_checks_every_address_it_resolves_to_now() -> None:
    dns = resolver({"hooks.example": ["93.184.215.14"], "rebind.example": ["93.184.215.14", "127.0.0.1"]})
    await check_target("https://hooks.example/h", NONE, dns)
    with pytest.raises(OutboundRefused, match=re.escape("rebind.example → 127.0.0.1")):
        await check_target("https://rebind.example/h", NONE, dns)
    await check_target("https://later.example/h", NONE, dns)  # not resolvable now: every send checks again
    await check_target("http://gw.internal:8080/", OutboundPolicy.parse(["gw.internal"]), dns)  # listed: not resolved


def test_attempts_show_a_class_never_socket_text() -> None:
    assert NOT_ALLOWED in ERROR_CLASSES
    for cls in ERROR_CLASSES:
        assert shown_detail(False, cls) == cls
    # attempts recorded before classes were
    assert shown_detail(True, "网格员: HTTP 200") == "http 2xx"
    assert shown_detail(False, "网格员: HTTP 503") == "http 5xx"
    assert shown_detail(False, "unit: ConnectError: [Errno 111] Connection refused") == "refused"
    assert shown_detail(False, "unit: ConnectTimeout: timed out") == "timeout"
