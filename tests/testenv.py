"""The test environment's settings, and the environment the run started with (captured at
import, before fixtures point it at the test servers). Shared by every test tier.

Under pytest-xdist each worker (``PYTEST_XDIST_WORKER=gw0``, ``gw1``…) gets servers of its
own: a PostgreSQL DATABASE_URL names the database ``<name>_gw<N>`` (the ``settings`` fixture
creates it), a REDIS_URL its database number plus N, and free ports come from a block of
ports per worker. The SQLite file and the embedded Redis live in a temporary directory per
process already. Without xdist nothing changes."""

import os
import random
import socket
from urllib.parse import urlsplit, urlunsplit

TEST_ENV = {
    "YUCHI_ENV": "test",
    "YUCHI_SECRET_KEY": "test-secret",
    "YUCHI_API_TOKEN": "test-api-token",
    "WECHAT_OA_APPID": "wxtestappid000001",
    "WECHAT_OA_SECRET": "test-oa-secret",
    "WECHAT_OA_TOKEN": "testtoken",
    "WECHAT_OA_AES_KEY": "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR",
    "WECOM_CORP_ID": "wwtestcorp0000001",
    "WECOM_AGENT_ID": "1000005",
    "WECOM_SECRET": "test-wecom-secret",
    "WECOM_TOKEN": "testwecomtoken",
    "WECOM_AES_KEY": "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C",
    "YUCHI_SWEEP_GRACE": "0.001",
    # Tests without the simulator never reach the real platform: port 9 (discard) refuses at once.
    "WECHAT_API_BASE": "http://127.0.0.1:9",
    "WECOM_API_BASE": "http://127.0.0.1:9",
}

WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")  # "gw0", "gw1"… under xdist, else ""
WORKER_INDEX = int(WORKER[2:]) if WORKER.startswith("gw") else 0
REDIS_DATABASES = 16  # redis-server's default `databases`


def worker_database_url(url: str, worker: str = WORKER) -> str:
    """A PostgreSQL URL's database suffixed with the worker (``test`` → ``test_gw1``)."""
    if not worker or not url.startswith("postgresql"):
        return url
    parts = urlsplit(url)
    name = parts.path.lstrip("/") or "postgres"
    return urlunsplit(parts._replace(path=f"/{name}_{worker}"))


def worker_redis_url(url: str, index: int = WORKER_INDEX) -> str:
    """A redis:// URL's database number plus the worker's index (``/0`` → ``/1`` for gw1)."""
    if not index or not url.startswith(("redis://", "rediss://")):
        return url
    parts = urlsplit(url)
    number = int(parts.path.lstrip("/") or 0) + index
    if number >= REDIS_DATABASES:
        raise RuntimeError(
            f"REDIS_URL {url}: xdist worker {index} would use database {number}, "
            f"past redis-server's {REDIS_DATABASES}; run fewer workers (-n) or start lower"
        )
    return urlunsplit(parts._replace(path=f"/{number}"))


def free_port() -> int:
    """A port nobody listens on, for a server process to bind a moment later. Each worker
    draws from its own block below the kernel's ephemeral range (32768-60999), so neither
    another worker nor an outgoing connection takes it in that moment."""
    low = 20000 + 1000 * (WORKER_INDEX % 12)
    for port in random.sample(range(low, low + 1000), 1000):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {low}-{low + 999}")


for _key, _derive in (("DATABASE_URL", worker_database_url), ("REDIS_URL", worker_redis_url)):
    if os.environ.get(_key):
        os.environ[_key] = _derive(os.environ[_key])

# The environment the test run started with (before fixtures point it at test servers),
# with this worker's database and Redis.
ORIGINAL_ENV = dict(os.environ)
