"""The simulated people: Official Account followers and WeCom staff who act, so that the platform
sends Yuchi a callback, signed and encrypted exactly as WeChat does.

Each action changes the platform's state first (a follow is a follow whether or not Yuchi
answers), then posts the callback and reads the passive reply the way WeChat does: decrypted,
its signature checked, its addressing checked. What the user would see is recorded in their
inbox (kind ``passive``) and returned.
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any

import requests
from defusedxml.ElementTree import fromstring

from wxsim.callbacks import OAPlatform, WeComPlatform, xml_fields
from wxsim.direct_http import DirectHTTP
from wxsim.entities import ExternalContact, FollowUser, OAUser
from wxsim.state import SimState, summarize
from wxsim.transfer_actors import TransferActors

UNAVAILABLE = "该公众号暂时无法提供服务，请稍后再试"
PASSIVE_TYPES = {"text", "image", "voice", "video", "music", "news", "transfer_customer_service"}
# Menu button types whose event opens the 48-hour window (WeChat's customer-service rules).
WINDOW_MENU_EVENTS = {"CLICK", "scancode_push", "scancode_waitmsg"}


class ActorError(Exception):
    """The action is impossible on the real platform (e.g. a non-follower sends a message)."""


@dataclass
class CallbackResult:
    """What happened to one callback: Yuchi's HTTP status, the passive reply's fields (None
    for ``success`` or an empty answer), and any error WeChat would have seen."""

    status: int | None = None
    reply: dict[str, Any] | None = None
    error: str | None = None
    body: str = ""
    elapsed_ms: float = 0.0
    tries: int = 0
    sent: bool = False  # False when no callback_base is configured
    extra: dict[str, Any] | None = None

    @property
    def text(self) -> str:
        """The reply as the user reads it (text content or the first article's title)."""
        return summarize(self.reply) if self.reply else ""

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["text"] = self.text
        out.update(out.pop("extra") or {})
        return out


def parse_reply(xml: str) -> dict[str, Any]:
    """A passive reply's fields, flat; news articles as ``Articles`` (a list) and
    ``Article.Title`` etc. for the first one."""
    root = fromstring(xml)
    if root.tag != "xml":
        raise ValueError(f"root element is <{root.tag}>, not <xml>")
    fields: dict[str, Any] = {}
    for child in root:
        if len(child):
            continue
        fields[child.tag] = child.text or ""
    articles = root.find("Articles")
    if articles is not None:
        items = [{c.tag: c.text or "" for c in item} for item in articles.findall("item")]
        fields["Articles"] = items
        if items:
            fields.update({f"Article.{k}": v for k, v in items[0].items()})
    for name in ("Image", "Voice", "Video", "Music"):
        node = root.find(name)
        if node is not None:
            fields[name] = {c.tag: c.text or "" for c in node}
    return fields


MASS_HELPER = "mphelper"


class Actors(TransferActors):
    """Python API of the simulated people (also behind ``/_sim/actions/…`` and the CLI)."""

    def __init__(self, config: Any, state: SimState) -> None:
        self.config = config
        self.state = state
        # a fresh session per call, safe across the request threads and the callback
        # threads (tests swap in a fake)
        self.http: Any = DirectHTTP()

    # --- plumbing ----------------------------------------------------------------------------

    def _oa(self) -> OAPlatform:
        c = self.config
        return OAPlatform(c.oa_token, c.oa_aes_key, c.oa_appid, c.oa_account)

    def _wecom(self) -> WeComPlatform:
        c = self.config
        return WeComPlatform(c.wecom_token, c.wecom_aes_key, c.wecom_corp_id, c.wecom_agent_id)

    def _post(self, path: str, query: str, body: bytes) -> tuple[CallbackResult, str]:
        result = CallbackResult()
        base = self.config.callback_base
        if not base:
            result.error = "no callback_base configured: nothing was sent"
            return result, ""
        url = f"{base.rstrip('/')}{path}?{query}"
        started = time.perf_counter()
        text = ""
        for attempt in range(1, max(1, self.config.callback_tries) + 1):
            result.tries = attempt
            try:
                resp = self.http.post(
                    url,
                    data=body,
                    headers={"Content-Type": "text/xml", "User-Agent": "Mozilla/4.0"},
                    timeout=self.config.callback_timeout,
                )
            except requests.Timeout:  # WeChat waits 5 s, then tries again
                result.error = f"no answer within {self.config.callback_timeout} s"
                continue
            except requests.RequestException as exc:  # no connection: tries again too
                result.error = f"{type(exc).__name__}: cannot reach {base}"
                continue
            result.status, text, result.error = resp.status_code, resp.text, None
            break
        result.sent = True
        result.body = text
        result.elapsed_ms = round((time.perf_counter() - started) * 1000, 1)
        if result.status is not None and result.status != 200:
            result.error = f"HTTP {result.status}"
        return result, text

    def _send_oa(self, openid: str, fields: dict[str, Any], show: bool = True) -> CallbackResult:
        oa, mode = self._oa(), self.config.callback_mode
        req = oa.sign(xml_fields(fields), mode)
        result, text = self._post("/wechat/oa", req.query_string, req.body)
        if result.status == 200 and text.strip() not in ("", "success"):
            try:
                plaintext = self._open_oa_reply(oa, text, req.query)
                reply = parse_reply(plaintext)
                if reply.get("ToUserName") != openid or reply.get("FromUserName") != oa.account:
                    raise ValueError("reply To/From do not match the message")
                if reply.get("MsgType") not in PASSIVE_TYPES:
                    raise ValueError(f"unknown reply MsgType {reply.get('MsgType')!r}")
                result.reply = reply
            except Exception as exc:  # what WeChat shows when it cannot use the reply
                result.error = f"unusable passive reply ({type(exc).__name__}: {exc})"
        if show and result.sent:
            if result.reply is not None:
                self.state.deliver(f"openid:{openid}", "passive", result.reply)
            elif result.error:
                self.state.deliver(f"openid:{openid}", "error", {"Content": UNAVAILABLE})
        self.state.log_callback(
            {
                "platform": "oa",
                "event": fields.get("Event") or fields.get("MsgType"),
                "openid": openid,
                **{k: v for k, v in result.to_dict().items() if k != "body"},
            }
        )
        return result

    def _open_oa_reply(self, oa: OAPlatform, text: str, query: dict[str, str]) -> str:
        encrypted = "<Encrypt>" in text
        mode = self.config.callback_mode
        if mode == "safe" and not encrypted:
            raise ValueError("safe mode: the reply must be encrypted")
        if mode == "plain" and encrypted:
            raise ValueError("plaintext mode: the reply must not be encrypted")
        if not encrypted:
            return text
        plaintext = oa.decrypt_reply(text, query["timestamp"], query["nonce"])
        if plaintext == text:
            raise ValueError("encrypted reply without MsgSignature")
        return plaintext

    def _send_wecom(self, fields: dict[str, Any]) -> CallbackResult:
        wecom = self._wecom()
        req = wecom.sign(xml_fields(fields))
        result, text = self._post("/wechat/wecom", req.query_string, req.body)
        if result.status == 200 and text.strip() not in ("", "success"):
            try:
                result.reply = parse_reply(wecom.decrypt_reply(text))
            except Exception as exc:
                result.error = f"unusable passive reply ({type(exc).__name__}: {exc})"
        self.state.log_callback(
            {
                "platform": "wecom",
                "event": fields.get("ChangeType") or fields.get("Event"),
                "userid": fields.get("UserID", ""),
                "external_userid": fields.get("ExternalUserID", ""),
                **{k: v for k, v in result.to_dict().items() if k != "body"},
            }
        )
        return result

    def _now(self) -> int:
        return int(self.state.now())

    def _follower(self, openid: str) -> OAUser:
        user = self.state.user(openid)
        if user is None or not user.subscribe:
            raise ActorError(f"{openid} does not follow the account (follow first)")
        return user

    def verify_url(self, platform: str = "oa") -> CallbackResult:
        """The URL check WeChat makes when the callback URL is saved in the console: OA
        expects ``echostr`` back verbatim, WeCom the decrypted ``echostr``."""
        if platform not in ("oa", "wecom"):
            raise ActorError("platform must be oa or wecom")
        echo = secrets.token_hex(8)
        query = self._oa().url_check(echo) if platform == "oa" else self._wecom().url_check(echo)
        result = CallbackResult()
        base = self.config.callback_base
        if not base:
            result.error = "no callback_base configured: nothing was sent"
            return result
        started = time.perf_counter()
        try:
            resp = self.http.get(
                f"{base.rstrip('/')}/wechat/{platform}",
                params=query,
                timeout=self.config.callback_timeout,
            )
            result.status, result.body = resp.status_code, resp.text
        except requests.RequestException as exc:
            result.error = f"{type(exc).__name__}: cannot reach {base}"
        result.sent, result.tries = True, 1
        result.elapsed_ms = round((time.perf_counter() - started) * 1000, 1)
        verified = result.status == 200 and result.body == echo
        if result.error is None and not verified:
            result.error = f"URL check failed: HTTP {result.status}, expected the echo back"
        result.extra = {"verified": verified}
        self.state.log_callback(
            {
                "platform": platform,
                "event": "url_check",
                **{k: v for k, v in result.to_dict().items() if k != "body"},
            }
        )
        return result

    # --- Official Account followers -------------------------------------------------------

    def follow(
        self, openid: str, scene: str | int | None = None, ticket: str | None = None
    ) -> CallbackResult:
        """Follow the account, directly or through a parametric QR code (``scene`` or the
        ``ticket`` of a code made with ``qrcode/create``)."""
        scene_value, ticket = self._scene(scene, ticket)
        st = self.state
        attrs: dict[str, Any] = {
            "subscribe": True,
            "subscribe_time": self._now(),
            "subscribe_scene": "ADD_SCENE_QR_CODE" if scene_value else "ADD_SCENE_SEARCH",
            "qr_scene": 0,
            "qr_scene_str": "",
        }
        if scene_value:
            if scene_value.isdigit():
                attrs["qr_scene"] = int(scene_value)
            else:
                attrs["qr_scene_str"] = scene_value
        with st.lock:
            st.upsert_user(openid, **attrs)
            st.touch(openid)
        extra: dict[str, Any] = {"Event": "subscribe", "EventKey": ""}
        if scene_value:
            extra.update(EventKey=f"qrscene_{scene_value}", Ticket=ticket)
        return self._send_oa(
            openid, self._oa().message_fields(openid, "event", self._now(), **extra)
        )

    def _scene(self, scene: str | int | None, ticket: str | None) -> tuple[str, str]:
        """(scene, ticket) for a QR event: the code made through the API when there is one,
        else a synthetic ticket (so tests need not create the code first)."""
        st = self.state
        with st.lock:
            if ticket:
                code = st.qrcodes.get(ticket)
                if code is None:
                    raise ActorError(f"unknown QR ticket {ticket!r}")
                return code.scene, ticket
            if scene is None or scene == "":
                return "", ""
            scene = str(scene)
            for code in reversed(list(st.qrcodes.values())):
                if code.scene == scene:
                    return scene, code.ticket
        return scene, "gQsim_" + scene.encode().hex()[:40]

    def scan(
        self, openid: str, scene: str | int | None = None, ticket: str | None = None
    ) -> CallbackResult:
        """Scan a parametric QR code: ``SCAN`` for a follower, a follow with the scene for
        anyone else (as WeChat does)."""
        user = self.state.user(openid)
        if user is None or not user.subscribe:
            return self.follow(openid, scene, ticket)
        scene_value, ticket = self._scene(scene, ticket)
        if not scene_value:
            raise ActorError("scan needs a scene or a ticket")
        self.state.touch(openid)
        fields = self._oa().message_fields(
            openid, "event", self._now(), Event="SCAN", EventKey=scene_value, Ticket=ticket
        )
        return self._send_oa(openid, fields)

    def say(self, openid: str, text: str) -> CallbackResult:
        """Send the account a text message."""
        self._follower(openid)
        self.state.touch(openid)
        # Like WeChat's, message ids are unique for good, not per simulator run: a second demo
        # against the same database must not look like a retry of the first.
        msg_id = secrets.randbits(63)
        fields = self._oa().message_fields(openid, "text", self._now(), Content=text, MsgId=msg_id)
        return self._send_oa(openid, fields)

    def click(self, openid: str, key: str) -> CallbackResult:
        """Click a CLICK button of the menu this follower sees (the conditional menu their
        tags match, else the default; must exist when a menu was created). A CLICK carries
        the key only, no ``MenuId`` (the platform's documented CLICK fields)."""
        user = self._follower(openid)
        menu = self.state.menu_for(list(user.tagid_list))
        if menu is not None and key not in _menu_keys(menu):
            raise ActorError(f"the menu has no CLICK button with key {key!r}")
        self.state.touch(openid)
        fields = self._oa().message_fields(
            openid, "event", self._now(), Event="CLICK", EventKey=key
        )
        return self._send_oa(openid, fields)

    def view(self, openid: str, url: str) -> CallbackResult:
        """Open a VIEW menu link (does not open the 48-hour window); a conditional menu's
        VIEW carries its ``MenuId`` (documented: which conditional menu was clicked)."""
        user = self._follower(openid)
        menu = self.state.menu_for(list(user.tagid_list))
        extra = {"MenuId": menu["menuid"]} if menu is not None and "matchrule" in menu else {}
        fields = self._oa().message_fields(
            openid, "event", self._now(), Event="VIEW", EventKey=url, **extra
        )
        return self._send_oa(openid, fields)

    def unfollow(self, openid: str) -> CallbackResult:
        """Unfollow; WeChat shows nothing to a user who just left, so no reply is recorded."""
        self._follower(openid)
        self.state.upsert_user(openid, subscribe=False)
        fields = self._oa().message_fields(
            openid, "event", self._now(), Event="unsubscribe", EventKey=""
        )
        return self._send_oa(openid, fields, show=False)

    def template_finished_later(self, openid: str, msgid: int, status: str = "success") -> None:
        """Send ``TEMPLATESENDJOBFINISH`` shortly, from a background thread."""
        if not self.config.callback_base:
            return
        generation = self.state.generation  # after a reset() the job is forgotten

        def run() -> None:
            time.sleep(self.config.template_callback_delay)
            if self.state.generation != generation:
                return
            fields = self._oa().message_fields(
                openid,
                "event",
                self._now(),
                Event="TEMPLATESENDJOBFINISH",
                MsgID=msgid,
                Status=status,
            )
            self._send_oa(openid, fields, show=False)

        threading.Thread(target=run, name=f"wxsim-template-{msgid}", daemon=True).start()

    def mass_finished_later(self, msg_id: int, counts: dict[str, int], status: str) -> None:
        """Send ``MASSSENDJOBFINISH`` shortly, from a background thread. Its FromUserName is
        the account's mass-send helper, not a follower (``mphelper`` [unverified: old docs])."""
        if not self.config.callback_base:
            return
        generation = self.state.generation

        def run() -> None:
            time.sleep(self.config.mass_callback_delay)
            if self.state.generation != generation:
                return
            fields = self._oa().message_fields(
                MASS_HELPER,
                "event",
                self._now(),
                Event="MASSSENDJOBFINISH",
                MsgID=msg_id,
                Status=status,
                TotalCount=counts["total"],
                FilterCount=counts["filter"],
                SentCount=counts["sent"],
                ErrorCount=counts["error"],
            )
            self._send_oa(MASS_HELPER, fields, show=False)

        threading.Thread(target=run, name=f"wxsim-mass-{msg_id}", daemon=True).start()

    # --- WeCom staff and their customers ----------------------------------------------------

    def add_external_contact(
        self,
        userid: str | None = None,
        external_userid: str | None = None,
        state: str | None = None,
        config_id: str | None = None,
        name: str = "客户",
        unionid: str = "",
        welcome: bool = True,
    ) -> CallbackResult:
        """A customer adds a rep (scanning a contact-way QR when ``config_id`` is given: the
        rep and the state come from it). Issues a fresh welcome code unless ``welcome`` is
        False (the admin configured a welcome message, so WeCom sends none)."""
        st = self.state
        with st.lock:
            if config_id:
                way = st.contact_ways.get(config_id)
                if way is None:
                    raise ActorError(f"unknown contact way {config_id!r}")
                if userid is None:
                    if not way.user:
                        raise ActorError("the contact way has no user; pass userid")
                    userid = way.user[0]
                elif userid not in way.user:
                    raise ActorError(f"{userid} is not a user of contact way {config_id}")
                state = way.state if state is None else state
            if not userid:
                raise ActorError("userid is required")
            external_userid = external_userid or "wm" + st.rng.randbytes(15).hex()
            if st.rep(userid) is None:
                st.upsert_rep(userid, name=userid)
            contact = st.contacts.get(external_userid)
            if contact is None:
                contact = ExternalContact(external_userid, name=name, unionid=unionid)
                st.contacts[external_userid] = contact
            contact.follow[userid] = FollowUser(
                userid=userid,
                createtime=self._now(),
                state=state or "",
                add_way=1 if config_id else 0,
            )
            code = st.new_welcome_code(userid, external_userid) if welcome else None
        extra: dict[str, Any] = {
            "ChangeType": "add_external_contact",
            "UserID": userid,
            "ExternalUserID": external_userid,
        }
        if state:
            extra["State"] = state
        if code:
            extra["WelcomeCode"] = code.code
        fields = self._wecom().event_fields("change_external_contact", self._now(), **extra)
        result = self._send_wecom(fields)
        result.extra = {
            "userid": userid,
            "external_userid": external_userid,
            "welcome_code": code.code if code else None,
            "state": state or "",
        }
        return result

    def _relation(self, userid: str, external_userid: str) -> FollowUser:
        contact = self.state.contacts.get(external_userid)
        if contact is None or userid not in contact.follow:
            raise ActorError(f"{userid} and {external_userid} are not connected")
        return contact.follow[userid]

    def _change(
        self, change: str, userid: str, external_userid: str, **extra: Any
    ) -> CallbackResult:
        fields = self._wecom().event_fields(
            "change_external_contact",
            self._now(),
            ChangeType=change,
            UserID=userid,
            ExternalUserID=external_userid,
            **extra,
        )
        result = self._send_wecom(fields)
        result.extra = {"userid": userid, "external_userid": external_userid}
        return result

    def edit_external_contact(
        self,
        userid: str,
        external_userid: str,
        remark: str | None = None,
        description: str | None = None,
    ) -> CallbackResult:
        """The rep edits the customer's remark or description in the WeCom client."""
        with self.state.lock:
            follow = self._relation(userid, external_userid)
            if remark is not None:
                follow.remark = remark
            if description is not None:
                follow.description = description
        return self._change("edit_external_contact", userid, external_userid)

    def rep_deletes_customer(self, userid: str, external_userid: str) -> CallbackResult:
        """The rep deletes the customer: ``del_external_contact`` (WeCom's naming)."""
        with self.state.lock:
            self._relation(userid, external_userid)
            del self.state.contacts[external_userid].follow[userid]
        return self._change("del_external_contact", userid, external_userid)

    def customer_deletes_rep(self, userid: str, external_userid: str) -> CallbackResult:
        """The customer deletes the rep in WeChat: ``del_follow_user``. The rep keeps the
        customer in their list (a one-sided deletion), as in the WeCom client."""
        with self.state.lock:
            self._relation(userid, external_userid)
        return self._change("del_follow_user", userid, external_userid)


def _menu_keys(menu: dict[str, Any]) -> set[str]:
    keys = set()
    for button in menu.get("button", []):
        for b in [button, *(button.get("sub_button") or [])]:
            if b.get("key"):
                keys.add(b["key"])
    return keys
