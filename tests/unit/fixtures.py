"""Paths and loaders for the Official Account XML fixtures (pure: files only)."""

from __future__ import annotations

from pathlib import Path

OA_FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "oa"

APP_ID = "wxunittestapp0001"
ACCOUNT = "gh_3f1c2a9b8d7e"
OPENID = "oLVPpjqs2BhvzwPj5A-vTYAX4GLc"


def fixture_bytes(name: str) -> bytes:
    return (OA_FIXTURES / name).read_bytes()


def fixture_names(prefix: str = "") -> list[str]:
    return sorted(p.name for p in OA_FIXTURES.glob(f"{prefix}*.xml"))


def hostile_names() -> list[str]:
    return fixture_names("hostile__")


def wechat_names() -> list[str]:
    """Every fixture WeChat could really send (everything but the hostile ones)."""
    return [n for n in fixture_names() if not n.startswith("hostile__")]
