"""bot.core.redact: secret parameters, URL passwords and remembered values are masked in any text;
log records are redacted as they are made; `yuchi check-config` shows no password."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from click.testing import CliRunner

from bot.cli import main
from bot.core import redact
from bot.core.config import load_settings


@pytest.mark.parametrize(
    ("raw", "secret"),
    [
        ("/cgi-bin/token?grant_type=client_credential&appid=wx1&secret=AppS3cretValue", "AppS3"),
        ("/cgi-bin/gettoken?corpid=ww1&corpsecret=CorpS3cretValue", "CorpS3"),
        ("/cgi-bin/message/custom/send?access_token=ACCESS-T0KEN-42", "ACCESS-T0KEN"),
        ("/wechat/oa?signature=0a1b2c3d4e&timestamp=1&nonce=2", "0a1b2c3d4e"),
        ("/wechat/oa?msg_signature=9f8e7d6c&encrypt_type=aes", "9f8e7d6c"),
        ("/wechat/oa?echostr=ECHO1234567", "ECHO1234567"),
        ("/oauth/back?code=OAUTHCODE99&state=x", "OAUTHCODE99"),
        ("GET /x?SECRET=UpperCaseS3cret HTTP/1.1", "UpperCaseS3cret"),
        ("redirect=https%3A%2F%2Fh%2Fp%3Fsecret%3DEncodedS3cret", "EncodedS3cret"),
        ("https://h/p?next=%3Faccess_token%3DNestedT0ken", "NestedT0ken"),
        ('{"errcode": 0, "access_token": "JsonT0ken-1"}', "JsonT0ken-1"),
        ("{'access_token': 'ReprT0ken-2', 'expires_in': 7200}", "ReprT0ken-2"),
        ("postgresql+psycopg://yuchi:Db-Pa55word@db:5432/yuchi", "Db-Pa55word"),
        ("redis://:Redis-Pa55@cache:6379/0", "Redis-Pa55"),
        ("postgresql://yuchi@db/yuchi?password=QueryPa55word&sslmode=require", "QueryPa55word"),
    ],
)
def test_secret_parameters_are_masked(raw: str, secret: str) -> None:
    out = redact.text(raw)
    assert secret not in out
    assert redact.MASK in out


def test_the_rest_of_the_text_stays_readable() -> None:
    raw = (
        "HTTPConnectionPool(host='127.0.0.1', port=9): Max retries exceeded with url: "
        "/cgi-bin/token?grant_type=client_credential&appid=wx1&secret=abc (Caused by X)"
    )
    out = redact.text(raw)
    assert out == raw.replace("secret=abc", "secret=***")
    # names that merely end in a secret parameter's name are not secrets
    plain = "errcode=40001 error_code=45015 nonce=77 timestamp=1700000000 openid=o1"
    assert redact.text(plain) == plain


def test_remembered_values_are_masked_anywhere() -> None:
    redact.remember("remembered-s3cret-value", "short")  # too short to mask safely: ignored
    out = redact.text("the platform said: remembered-s3cret-value is wrong; short")
    assert out == "the platform said: *** is wrong; short"


def test_an_exception_is_named_and_redacted() -> None:
    exc = ConnectionError("cannot reach /cgi-bin/gettoken?corpid=w&corpsecret=Zz9Zz9Zz9")
    assert (
        redact.error(exc)
        == "ConnectionError: cannot reach /cgi-bin/gettoken?corpid=w&corpsecret=***"
    )


def test_log_records_are_redacted_for_every_handler(caplog: pytest.LogCaptureFixture) -> None:
    redact.install()
    log = logging.getLogger("yuchi.test.redact")
    with caplog.at_level(logging.INFO, logger="yuchi.test.redact"):
        log.info("GET %s", "/wechat/oa?signature=LoggedSig123&nonce=1")
        try:
            raise RuntimeError("url: /cgi-bin/token?appid=wx&secret=TracebackS3cret")
        except RuntimeError:
            log.exception("token fetch failed (access_token=%s)", "ArgT0kenValue")
    assert "LoggedSig123" not in caplog.text and "signature=***" in caplog.text
    assert "TracebackS3cret" not in caplog.text and "secret=***" in caplog.text
    assert "ArgT0kenValue" not in caplog.text
    assert "RuntimeError" in caplog.text  # the traceback is still there
    for record in caplog.records:
        assert "LoggedSig123" not in record.getMessage()


def test_install_is_idempotent() -> None:
    redact.install()
    factory = logging.getLogRecordFactory()
    redact.install()
    assert logging.getLogRecordFactory() is factory


def test_settings_secrets_are_remembered(tmp_path: Path) -> None:
    load_settings({"YUCHI_VAR_DIR": str(tmp_path), "WECHAT_OA_SECRET": "settings-oa-s3cret-xyz"})
    assert redact.text("echo settings-oa-s3cret-xyz") == "echo ***"


def test_check_config_shows_no_password(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("YUCHI_ENV", "REDIS_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("YUCHI_VAR_DIR", str(tmp_path))
    monkeypatch.setenv(
        "DATABASE_URL", "postgresql+psycopg://yuchi:UserInfoPa55@db/yuchi?password=QueryPa55"
    )
    monkeypatch.setenv("REDIS_URL", "redis://cache:6379/0?password=RedisQueryPa55")
    result = CliRunner().invoke(main, ["check-config"])
    assert result.exit_code == 0, result.output
    assert "DATABASE_URL" in result.output and "@db/yuchi" in result.output
    for password in ("UserInfoPa55", "QueryPa55", "RedisQueryPa55"):
        assert password not in result.output


def test_config_errors_show_no_password(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("YUCHI_VAR_DIR", str(tmp_path))
    monkeypatch.setenv("DATABASE_URL", "mysql://yuchi:BadSchemePa55@db/yuchi")
    result = CliRunner().invoke(main, ["check-config"])
    assert result.exit_code == 2
    assert "DATABASE_URL" in result.output and "BadSchemePa55" not in result.output
