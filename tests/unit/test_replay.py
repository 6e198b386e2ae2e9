"""handlers.replay: the freshness window and the stamp stored with each callback's event."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import pytest

from handlers.common import Rejected
from handlers.replay import check_fresh, stamp

NOW = datetime(2026, 5, 1, 8, 0, 0, tzinfo=UTC)
T = int(NOW.timestamp())


@pytest.mark.parametrize("offset", [0, 300, -300, 299])
def test_inside_the_window(offset: int) -> None:
    check_fresh(str(T + offset), NOW, 300)


@pytest.mark.parametrize("offset", [301, -301, -30 * 86400, 10 * 365 * 86400])
def test_outside_the_window(offset: int) -> None:
    with pytest.raises(Rejected) as info:
        check_fresh(str(T + offset), NOW, 300)
    assert info.value.status == 403 and "from the server clock" in info.value.reason


@pytest.mark.parametrize("raw", ["", "-1", "1e9", "１７", "123456789012", " 17"])
def test_malformed_timestamp(raw: str) -> None:
    with pytest.raises(Rejected, match="malformed timestamp"):
        check_fresh(raw, NOW, 300)


def test_stamp_keys_the_signed_pair_per_channel() -> None:
    s = stamp("oa:wx1", str(T), "12345", b"<xml/>", NOW, 300)
    assert s.nonce_key == f"oa:wx1:{T}:12345"
    assert s.body_digest == hashlib.sha256(b"<xml/>").hexdigest()
    assert s.received_at == NOW
    assert stamp("wecom:ww1", str(T), "12345", b"<xml/>", NOW, 300).nonce_key != s.nonce_key


@pytest.mark.parametrize("nonce", ["", "n" * 65, "a b", "x;y", "１２"])
def test_malformed_nonce(nonce: str) -> None:
    with pytest.raises(Rejected, match="malformed nonce"):
        stamp("oa:wx1", str(T), nonce, b"", NOW, 300)
