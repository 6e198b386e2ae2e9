"""One outbound webhook request, made safely: the host is resolved once, every address it
resolves to must be allowed (journeys.webhook_urls), and the connection goes to the address
that was checked (no second lookup a rebinding DNS server could answer differently), with the
URL's host name kept for the Host header, TLS SNI and certificate check. No redirects are
followed, no proxy from the environment is used, and at most EXCERPT_BYTES of the answer are
read."""

from __future__ import annotations

import ipaddress
import re
import socket
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests
from requests.adapters import HTTPAdapter

from journeys.webhook_urls import Allow, IPAddress, address_refusal, host_of, url_refusal

EXCERPT_BYTES = 2048  # read at most this much of an answer
EXCERPT_CHARS = 500  # and keep at most this much of it
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


class Refused(Exception):
    """The URL or an address it resolves to is not allowed; nothing was sent."""


@dataclass(frozen=True)
class Answer:
    status: int
    duration_ms: int
    excerpt: str | None  # JSON or text answers only; never a redirect's


def resolve(url: str, allow: Allow) -> IPAddress:
    """The checked address to connect to; Refused if the URL or any address of its host is
    not allowed; OSError (socket.gaierror) if the name does not resolve."""
    if refusal := url_refusal(url, allow):
        raise Refused(refusal)
    host = host_of(url)
    try:
        return ipaddress.ip_address(host)  # a literal: url_refusal judged it
    except ValueError:
        pass
    port = urlsplit(url).port or (443 if url.lower().startswith("https:") else 80)
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses = list(dict.fromkeys(ipaddress.ip_address(info[4][0]) for info in infos))
    if not allow.names_host(host):
        for ip in addresses:
            if refusal := address_refusal(ip, allow):
                raise Refused(f"{host} resolves to {refusal}")
    return addresses[0]


class _PinnedHostAdapter(HTTPAdapter):
    """HTTPS to an address, with SNI and the certificate checked against ``host``."""

    def __init__(self, host: str) -> None:
        self.host = host  # set before HTTPAdapter.__init__ builds the pool manager
        super().__init__(max_retries=0)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs.update(server_hostname=self.host, assert_hostname=self.host)
        super().init_poolmanager(*args, **kwargs)


def post(
    url: str,
    ip: IPAddress,
    data: bytes,
    headers: dict[str, str],
    timeout: tuple[float, float],
    verify: bool | str = True,
) -> Answer:
    """POST ``data`` to ``url`` over a connection to ``ip`` (from resolve)."""
    parts = urlsplit(url)
    host = host_of(url)
    address = f"[{ip}]" if ip.version == 6 else str(ip)
    netloc = f"{address}:{parts.port}" if parts.port else address
    target = urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))
    started = time.monotonic()
    with requests.Session() as session:
        session.trust_env = False  # no proxy, no .netrc: the request goes where it was checked
        session.mount("https://", _PinnedHostAdapter(host))
        resp = session.post(
            target,
            data=data,
            headers={**headers, "Host": parts.netloc.rpartition("@")[2]},
            timeout=timeout,
            allow_redirects=False,
            stream=True,
            verify=verify,
        )
        with resp:
            excerpt = _excerpt(resp)
    return Answer(resp.status_code, round((time.monotonic() - started) * 1000), excerpt)


def _excerpt(resp: requests.Response) -> str | None:
    if resp.is_redirect or 300 <= resp.status_code < 400:
        return None
    mime = resp.headers.get("Content-Type", "").split(";")[0].strip().lower()
    if not (mime.startswith("text/") or mime == "application/json" or mime.endswith("+json")):
        return None
    raw = resp.raw.read(EXCERPT_BYTES, decode_content=True) or b""
    return _CONTROL.sub("", raw.decode("utf-8", errors="replace"))[:EXCERPT_CHARS]
