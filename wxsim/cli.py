"""``yuchi sim``: run the simulator, or drive a running one through its ``/_sim/`` API."""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

import click

DEFAULT_SIM_URL = "http://127.0.0.1:8100"
KIND_LABELS = {
    "passive": "被动回复",
    "custom": "客服消息",
    "template": "模板消息",
    "app": "应用消息",
    "welcome": "欢迎语",
    "error": "错误提示",
}


@click.group("sim", invoke_without_command=True)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8100, type=int, show_default=True)
@click.option(
    "--callback-base",
    default=lambda: os.environ.get("WXSIM_CALLBACK_BASE"),
    help="Where Yuchi listens, e.g. http://127.0.0.1:8000 (callbacks go to /wechat/oa, /wechat/wecom).",
)
@click.option(
    "--callback-mode",
    type=click.Choice(["safe", "compat", "plain"]),
    default="safe",
    show_default=True,
    help="Official Account message encryption mode.",
)
@click.option(
    "--token-ttl", type=int, default=7200, show_default=True, help="access_token lifetime (s)"
)
@click.pass_context
def sim(
    ctx: click.Context,
    host: str,
    port: int,
    callback_base: str | None,
    callback_mode: str,
    token_ttl: int,
) -> None:
    """The local WeChat / WeCom simulator. Without a subcommand: run it.

    Credentials (WECHAT_OA_APPID, WECHAT_OA_SECRET, WECOM_CORP_ID, WECOM_SECRET, the callback
    tokens and keys) come from the same environment as the server's.
    """
    if ctx.invoked_subcommand is not None:
        return
    from werkzeug.serving import run_simple

    from bot.core.config import ConfigError
    from wxsim.app import SimConfig, create_sim_app
    from wxsim.control import env_for

    try:
        config = SimConfig.from_env(
            callback_base=callback_base.rstrip("/") if callback_base else None,
            callback_mode=callback_mode,
            token_ttl=token_ttl,
        )
    except ConfigError as exc:
        for problem in exc.problems:
            click.secho(f"  ✗ {problem}", fg="red", err=True)
        sys.exit(2)
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    base = f"http://{shown}:{port}"
    click.secho("wxsim: the WeChat / WeCom simulator", bold=True)
    click.echo(f"  Official Account API  {base}/cgi-bin/…  (appid {config.oa_appid})")
    click.echo(f"  WeCom API             {base}/wecom/cgi-bin/…  (corp {config.wecom_corp_id})")
    click.echo(f"  OAuth                 {base}/connect/oauth2/authorize")
    click.echo(f"  Control               {base}/_sim/   JS-SDK stub {base}/_sim/jweixin.js")
    click.echo(f"  Callbacks to          {config.callback_base or '(none: pass --callback-base)'}")
    click.echo("\nPoint Yuchi at it:")
    for name, value in env_for(base).items():
        click.echo(f"  export {name}={value}")
    click.echo()
    run_simple(host, port, create_sim_app(config), threaded=True, use_reloader=False)


# --- driving a running simulator --------------------------------------------------------------

sim_url_option = click.option(
    "--sim-url",
    default=lambda: os.environ.get("WXSIM_URL", DEFAULT_SIM_URL),
    show_default=DEFAULT_SIM_URL,
    help="The running simulator (or WXSIM_URL).",
)
openid_option = click.option("--openid", default="o_demo_user", show_default=True)


def _call(sim_url: str, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
    import requests

    try:
        resp = requests.request(method, f"{sim_url.rstrip('/')}/_sim{path}", timeout=30, **kwargs)
    except requests.RequestException as exc:
        click.secho(f"✗ cannot reach the simulator at {sim_url}: {exc}", fg="red", err=True)
        click.echo(
            "  Start it with: yuchi sim --port 8100 --callback-base http://127.0.0.1:8000", err=True
        )
        sys.exit(1)
    data = resp.json()
    if resp.status_code >= 400:
        click.secho(f"✗ {data.get('error', resp.text)}", fg="red", err=True)
        sys.exit(1)
    return data


def _describe_reply(reply: dict[str, Any]) -> str:
    kind = reply.get("MsgType")
    if kind == "text":
        return f"文本：{reply.get('Content', '')}"
    if kind == "news":
        parts = [reply.get("Article.Title", "")]
        if reply.get("Article.Description"):
            parts.append(reply["Article.Description"])
        url = reply.get("Article.Url")
        return "图文：" + " — ".join(p for p in parts if p) + (f"（{url}）" if url else "")
    return f"{kind} 消息：{json.dumps(reply, ensure_ascii=False)}"


def _show_result(what: str, result: dict[str, Any]) -> None:
    click.secho(f"→ {what}", bold=True)
    status = result.get("status")
    took = f"{result.get('elapsed_ms', 0):.0f} ms"
    if not result.get("sent"):
        click.secho(f"  没有发送回调：{result.get('error')}", fg="yellow")
    elif status != 200:
        click.secho(
            f"  ✗ Yuchi 应答 {status or '无响应'}（{result.get('error')}），{took}", fg="red"
        )
    elif result.get("reply"):
        click.echo(f"  ← {_describe_reply(result['reply'])}   ({took})")
    elif result.get("error"):
        click.secho(f"  ✗ {result['error']}", fg="red")
        click.echo("  用户看到：该公众号暂时无法提供服务，请稍后再试")
    else:
        click.echo(f"  （无被动回复，Yuchi 应答 success）   ({took})")
    for key in ("external_userid", "welcome_code", "state"):
        if result.get(key):
            click.echo(f"  {key}: {result[key]}")


@sim.command()
@click.option("--scene", default=None, help="Follow through a parametric QR code with this scene.")
@openid_option
@sim_url_option
def follow(scene: str | None, openid: str, sim_url: str) -> None:
    """A simulated user follows the Official Account."""
    result = _call(sim_url, "POST", "/actions/follow", json={"openid": openid, "scene": scene})
    _show_result(f"{openid} 关注公众号" + (f"（扫码场景 {scene}）" if scene else ""), result)


@sim.command()
@click.argument("text")
@openid_option
@sim_url_option
def say(text: str, openid: str, sim_url: str) -> None:
    """A simulated follower sends TEXT."""
    result = _call(sim_url, "POST", "/actions/say", json={"openid": openid, "text": text})
    _show_result(f"{openid} 说：{text}", result)


@sim.command("click")
@click.argument("key")
@openid_option
@sim_url_option
def click_(key: str, openid: str, sim_url: str) -> None:
    """A simulated follower clicks the menu button KEY."""
    result = _call(sim_url, "POST", "/actions/click", json={"openid": openid, "key": key})
    _show_result(f"{openid} 点击菜单 {key}", result)


@sim.command()
@click.argument("scene")
@openid_option
@sim_url_option
def scan(scene: str, openid: str, sim_url: str) -> None:
    """A simulated user scans a parametric QR code with SCENE."""
    result = _call(sim_url, "POST", "/actions/scan", json={"openid": openid, "scene": scene})
    _show_result(f"{openid} 扫码（场景 {scene}）", result)


@sim.command()
@openid_option
@sim_url_option
def unfollow(openid: str, sim_url: str) -> None:
    """A simulated follower unfollows."""
    result = _call(sim_url, "POST", "/actions/unfollow", json={"openid": openid})
    _show_result(f"{openid} 取消关注", result)


@sim.command("add-contact")
@click.option("--userid", default=None, help="The rep (default: the contact way's first user).")
@click.option("--external-userid", default=None, help="The customer (default: a new one).")
@click.option("--state", "state_", default=None, help="The contact way's state.")
@click.option("--config-id", default=None, help="Add through this contact way (its QR code).")
@click.option("--name", default="客户", show_default=True)
@sim_url_option
def add_contact(
    userid: str | None,
    external_userid: str | None,
    state_: str | None,
    config_id: str | None,
    name: str,
    sim_url: str,
) -> None:
    """A WeChat user adds a rep as a contact (WeCom add_external_contact)."""
    if not userid and not config_id:
        raise click.UsageError("pass --userid or --config-id")
    body = {
        "userid": userid,
        "external_userid": external_userid,
        "state": state_,
        "config_id": config_id,
        "name": name,
    }
    result = _call(sim_url, "POST", "/actions/add_external_contact", json=body)
    _show_result(f"客户添加了 {result.get('userid')}", result)


@sim.command()
@click.option("--openid", default=None, help="A follower (default o_demo_user).")
@click.option("--external-userid", default=None, help="A WeCom customer.")
@click.option("--userid", default=None, help="A rep (application messages).")
@sim_url_option
def inbox(
    openid: str | None, external_userid: str | None, userid: str | None, sim_url: str
) -> None:
    """What a simulated user, customer or rep has received."""
    if external_userid:
        params = {"external_userid": external_userid}
    elif userid:
        params = {"userid": userid}
    else:
        params = {"openid": openid or "o_demo_user"}
    data = _call(sim_url, "GET", "/inbox", params=params)
    who = next(iter(params.values()))
    if not data["messages"]:
        click.echo(f"{who}：收件箱是空的")
        return
    click.secho(f"{who} 的收件箱（{len(data['messages'])} 条）", bold=True)
    for item in data["messages"]:
        when = time.strftime("%m-%d %H:%M:%S", time.localtime(item["at"]))
        label = KIND_LABELS.get(item["kind"], item["kind"])
        text = item.get("text") or json.dumps(item["payload"], ensure_ascii=False)[:120]
        click.echo(f"  {when}  [{label}]  {text}")


@sim.command()
@sim_url_option
def reset(sim_url: str) -> None:
    """Forget every user, token, tag and message in the running simulator."""
    _call(sim_url, "POST", "/reset")
    click.echo("simulator reset")
