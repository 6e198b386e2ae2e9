"""Which addresses a journey's webhook may reach. Pure: the same rules judge a URL when a
journey is validated (address literals and ``localhost`` by name) and each address a host
name resolves to when the webhook is sent (bot.automation.webhook_http).

Loopback, link-local, private, multicast, reserved and other non-global addresses are
refused unless the allow-list (``YUCHI_WEBHOOK_ALLOW``) names them: by address or network
(``127.0.0.1``, ``10.1.0.0/16``) or by host name (``hooks.internal``: whatever it resolves to).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_HOST = re.compile(
    r"^(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*\.?$"
)


@dataclass(frozen=True)
class Allow:
    """The allow-list: networks and host names a webhook may reach although not public."""

    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    hosts: frozenset[str] = frozenset()

    @classmethod
    def parse(cls, items: Iterable[str]) -> Allow:
        """From ``127.0.0.1``, ``10.0.0.0/8``, ``hooks.internal`` entries; ValueError names
        the first entry that is neither an address, a network nor a host name."""
        networks, hosts = [], set()
        for raw in items:
            item = raw.strip().lower()
            if not item:
                continue
            try:
                networks.append(ipaddress.ip_network(item.strip("[]"), strict=False))
            except ValueError:
                if not _HOST.match(item):
                    raise ValueError(
                        f"{raw!r} is not an address, a network or a host name"
                    ) from None
                hosts.add(item.rstrip("."))
        return cls(tuple(networks), frozenset(hosts))

    def names_host(self, host: str) -> bool:
        return host.lower().rstrip(".") in self.hosts

    def names_address(self, ip: IPAddress) -> bool:
        return any(ip.version == n.version and ip in n for n in self.networks)

    def __str__(self) -> str:
        return ",".join([*(str(n) for n in self.networks), *sorted(self.hosts)])


NOTHING = Allow()


def address_refusal(ip: IPAddress, allow: Allow = NOTHING) -> str | None:
    """Why a webhook may not reach ``ip`` (None: it may)."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if allow.names_address(ip):
        return None
    for kind in ("loopback", "link_local", "multicast", "reserved", "unspecified", "private"):
        if getattr(ip, f"is_{kind}"):
            return f"{ip} is a {kind.replace('_', '-')} address"
    if not ip.is_global:
        return f"{ip} is not a public address"
    return None


def host_of(url: str) -> str:
    """The host of ``url`` (lower case, IPv6 without brackets); ValueError if it has none."""
    host = urlsplit(url).hostname
    if not host:
        raise ValueError("the url has no host")
    return host


def url_refusal(url: str, allow: Allow = NOTHING) -> str | None:
    """Why a webhook may not POST to ``url``, judged without the network: the scheme, user
    info, the host, an address literal, and ``localhost`` by name (None: nothing seen)."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port out of range
        host = host_of(url)
    except ValueError as exc:
        return f"not a usable url ({exc})"
    if parts.scheme not in ("http", "https"):
        return "a webhook url starts with https:// or http://"
    if parts.username is not None or parts.password is not None:
        return "a webhook url carries no user name or password (the request is signed)"
    if allow.names_host(host):
        return None
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        name = host.rstrip(".")
        if name == "localhost" or name.endswith(".localhost"):
            return f"{host} is a loopback host name"
        return None
    return address_refusal(ip, allow)
