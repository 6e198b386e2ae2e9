"""The sidebar's pages: the entry (WeCom's chat toolbar opens it), the OAuth callback, a
customer's page, "my leads", a lead's page (the lead card's link) and "my campaign links"
(全员营销: the employee's own link, QR code and poster for every open campaign)."""

from __future__ import annotations

from flask import Blueprint, g, make_response, redirect, render_template, request
from flask.typing import ResponseReturnValue

from bot.campaigns import employee
from bot.core import wechat
from bot.desk import leads, screen
from bot.sales import rep_session
from bot.wecom import jsapi
from sidebar.guard import before_arg, kind_arg, page_error, rep_page, set_cookie, settings

bp = Blueprint(
    "sidebar",
    __name__,
    url_prefix="/sidebar",
    template_folder="templates",
    static_folder="static",
    static_url_path="/static",
)
NOT_YOURS = "你没有权限查看这位客户：只有客户的跟进人、线索负责人或其团队主管可以查看。"


@bp.after_request
def _no_store(response):  # noqa: ANN001, ANN202 - pages hold customer data: never cached
    response.headers.setdefault("Cache-Control", "no-store")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    return response


@bp.get("/")
@rep_page
def entry() -> ResponseReturnValue:
    """Signs wx.config and wx.agentConfig for this URL; the page's script learns the chat's
    customer (getContext, getCurExternalContact) and opens their page."""
    s = settings()
    url = f"{s.public_url}{request.full_path.rstrip('?')}"
    try:
        signed = jsapi.page_config(s, url)
    except wechat.PlatformError:
        signed = None  # the page says the JS-SDK is unavailable and offers "my leads"
    return render_template(
        "sidebar/entry.html", signed=signed, jssdk_url=s.wecom_jssdk_url, csrf=g.rep.csrf
    )


@bp.get("/oauth/callback")
def oauth_callback() -> ResponseReturnValue:
    try:
        token, next_path = rep_session.login(
            settings(), request.args.get("code"), request.args.get("state")
        )
    except rep_session.LoginRefused as exc:
        return page_error(exc.status, exc.message)
    return set_cookie(make_response(redirect(next_path, 302)), token)


@bp.get("/contacts/<id:contact_id>")
@rep_page
def contact(contact_id: int) -> ResponseReturnValue:
    data = screen.contact_screen(settings(), g.rep.userid, contact_id, kind_arg(), before_arg())
    if data is None:
        return page_error(403, NOT_YOURS)
    return render_template("sidebar/contact.html", d=data, csrf=g.rep.csrf, focus_lead=None)


@bp.get("/leads")
@rep_page
def my_leads() -> ResponseReturnValue:
    data = leads.my_leads(settings(), g.rep.userid)
    if data is None:
        return page_error(403, "你不在销售人员名单中。")
    return render_template("sidebar/leads.html", d=data, csrf=g.rep.csrf)


@bp.get("/leads/<id:lead_id>")
@rep_page
def lead(lead_id: int) -> ResponseReturnValue:
    contact_id = leads.lead_contact(settings(), g.rep.userid, lead_id)
    data = (
        screen.contact_screen(settings(), g.rep.userid, contact_id, kind_arg(), before_arg())
        if contact_id is not None
        else None
    )
    if data is None:
        return page_error(403, "你没有权限查看这条线索。")
    return render_template("sidebar/contact.html", d=data, csrf=g.rep.csrf, focus_lead=lead_id)


@bp.get("/campaigns")
@rep_page
def my_campaign_links() -> ResponseReturnValue:
    links = employee.open_campaigns(settings(), g.rep.userid)
    return render_template("sidebar/campaigns.html", links=links, csrf=g.rep.csrf)
