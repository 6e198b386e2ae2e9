"""gunicorn as deployed (bot.gunicorn_conf) writes an access log that masks callback signatures,
echostr, OAuth codes and tokens, in the request line and in the referrer."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from urllib.parse import urlencode

import pytest
from testenv import ORIGINAL_ENV, TEST_ENV, free_port

from wxsim.callbacks import OAPlatform, xml_fields

pytestmark = pytest.mark.slow


def _get(url: str, headers: dict[str, str] | None = None) -> int:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=10):
            return 200
    except urllib.error.HTTPError as exc:
        return exc.code
    except urllib.error.URLError:  # not listening yet
        return 0


def test_access_log_masks_secret_parameters(tmp_path, clean, oa: OAPlatform):
    port = free_port()
    log_file = tmp_path / "access.log"
    env = {
        **ORIGINAL_ENV,
        **TEST_ENV,
        "DATABASE_URL": clean.database_url,
        "REDIS_URL": os.environ["REDIS_URL"],
        "YUCHI_VAR_DIR": str(tmp_path / "var"),
        "PORT": str(port),
        "WEB_CONCURRENCY": "1",
        "YUCHI_ACCESS_LOG": str(log_file),
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "-c",
            "python:bot.gunicorn_conf",
            "bot.app:create_app()",
        ],
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while _get(f"{base}/healthz") != 200:
            assert proc.poll() is None and time.monotonic() < deadline, "gunicorn did not start"
            time.sleep(0.2)
        check = oa.url_check("ECHO-SECRET-4711")
        assert _get(f"{base}/wechat/oa?{urlencode(check)}") == 200
        signed = oa.sign(xml_fields(oa.message_fields("oLog", "text", Content="hi", MsgId=1)))
        req = urllib.request.Request(
            f"{base}/wechat/oa?{signed.query_string}", data=signed.body, method="POST"
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert resp.status == 200
        referrer = f"{base}/back?code=OAUTH-CODE-0815&access_token=REFERRER-TOKEN-42"
        _get(f"{base}/nowhere?code=OAUTH-CODE-0815&secret=QUERY-SECRET-99", {"Referer": referrer})
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)

    logged = log_file.read_text()
    assert "/wechat/oa?" in logged and "signature=***" in logged and "echostr=***" in logged
    assert "msg_signature=***" in logged and "code=***" in logged
    secrets = [
        check["signature"],
        "ECHO-SECRET-4711",
        signed.query["msg_signature"],
        "OAUTH-CODE-0815",
        "REFERRER-TOKEN-42",
        "QUERY-SECRET-99",
    ]
    for value in secrets:
        assert value not in logged, value
