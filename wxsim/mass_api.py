"""The Official Account's media and mass-send APIs, with WeChat's rules and error codes.

- ``media/upload?type=`` (temporary, 3 days) and ``material/add_material?type=`` (permanent;
  images get a URL): multipart field ``media``; type 40004, missing file 41005, format 40005,
  size 40006/40009 (image 10 MB, thumb 64 KB JPG, voice 2 MB, video 10 MB).
- ``message/mass/sendall`` (by tag or to all) and ``message/mass/send`` (2..10,000 openids,
  else 40130): text, image (media_id checked: unknown or expired 40007), mpnews, voice,
  mpvideo; ``clientmsgid`` ≤ 64 bytes (45067) dedupes: a second call answers 45065 with the
  first msg_id (without one, the platform takes a digest of the scope and content
  [unverified: its time span, taken as 24 h]). A follower receives at most
  ``mass_per_user_month`` mass messages a calendar month (Beijing time): the rest are filtered
  out (FilterCount); ``mass_daily_calls`` submissions a day, then 45028 [unverified: the code
  for the daily call limit; 45028 is "has no masssend quota"]; ``is_to_all`` counts against
  the same monthly 4 for the account (45028). An unknown tag answers 45159 [unverified: the
  code sendall gives; it is the tag APIs' invalid tag id]. The outcome arrives as
  ``MASSSENDJOBFINISH`` (TotalCount, FilterCount, SentCount, ErrorCount).
"""

from __future__ import annotations

import hashlib
import json
import secrets
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from flask import Blueprint, request

from wxsim.common import api, body, sim, state
from wxsim.errors import ApiError

bp = Blueprint("wxsim_mass", __name__)

TEMPORARY_LIFE = 3 * 24 * 3600
BEIJING = timezone(timedelta(hours=8))
# type -> (largest bytes, size error, formats)
MEDIA_TYPES: dict[str, tuple[int, int, set[str]]] = {
    "image": (10 * 1024 * 1024, 40009, {"jpeg", "png", "gif", "bmp"}),
    "thumb": (64 * 1024, 40012, {"jpeg"}),
    "voice": (2 * 1024 * 1024, 40010, {"amr", "mp3"}),
    "video": (10 * 1024 * 1024, 40011, {"mp4"}),
}
TEMPORARY_IMAGE = {"jpeg", "png", "gif"}  # media/upload takes no bmp
MASS_TYPES = {"text", "image", "mpnews", "voice", "mpvideo", "wxcard"}
MEDIA_MASS_TYPES = {"image", "voice", "mpvideo", "mpnews"}
MAX_OPENIDS = 10_000


def _format(content: bytes) -> str | None:
    if content.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if content.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if content[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if content.startswith(b"BM"):
        return "bmp"
    if content.startswith(b"#!AMR"):
        return "amr"
    if content.startswith(b"ID3") or content[:2] == b"\xff\xfb":
        return "mp3"
    if content[4:8] == b"ftyp":
        return "mp4"
    return None


def _upload(permanent: bool) -> dict[str, Any]:
    kind = request.args.get("type", "")
    if kind not in MEDIA_TYPES:
        raise ApiError(40004)
    upload = request.files.get("media")
    if upload is None:
        raise ApiError(41005)
    content = upload.read()
    if not content:
        raise ApiError(41005)
    largest, size_error, formats = MEDIA_TYPES[kind]
    if kind == "image" and not permanent:
        formats = TEMPORARY_IMAGE
    if _format(content) not in formats:
        raise ApiError(40005)
    if len(content) > largest:
        raise ApiError(size_error)
    st = state()
    now = st.now()
    media_id = secrets.token_urlsafe(48)
    record = {
        "type": kind,
        "permanent": permanent,
        "created_at": now,
        "expires_at": None if permanent else now + TEMPORARY_LIFE,
        "size": len(content),
        "sha256": hashlib.sha256(content).hexdigest(),
    }
    with st.lock:
        st.media[media_id] = record
    return {"media_id": media_id, **record}


@bp.route("/cgi-bin/media/upload", methods=["GET", "POST"])
@api("oa", post=True)
def media_upload() -> dict[str, Any]:
    record = _upload(permanent=False)
    return {
        "type": record["type"],
        "media_id": record["media_id"],
        "created_at": int(record["created_at"]),
    }


@bp.route("/cgi-bin/material/add_material", methods=["GET", "POST"])
@api("oa", post=True)
def add_material() -> dict[str, Any]:
    record = _upload(permanent=True)
    out: dict[str, Any] = {"media_id": record["media_id"]}
    if record["type"] == "image":
        out["url"] = f"http://mmbiz.qpic.cn/sim/{record['media_id'][:24]}/0"
    return out


def check_media(media_id: object) -> None:
    """A media_id the platform still knows (permanent, or temporary within its 3 days)."""
    st = state()
    with st.lock:
        record = st.media.get(media_id) if isinstance(media_id, str) else None
        if record is None or (
            record["expires_at"] is not None and st.now() >= record["expires_at"]
        ):
            raise ApiError(40007)


def _content(data: dict[str, Any]) -> str:
    msgtype = data.get("msgtype")
    if msgtype not in MASS_TYPES:
        raise ApiError(40008)
    content = data.get(msgtype)
    if not isinstance(content, dict):
        raise ApiError(47001, f"missing {msgtype} object")
    if msgtype == "text" and not str(content.get("content") or "").strip():
        raise ApiError(44004)
    if msgtype in MEDIA_MASS_TYPES:
        check_media(content.get("media_id"))
    return msgtype


def _month(at: float) -> tuple[int, int]:
    local = datetime.fromtimestamp(at, UTC).astimezone(BEIJING)
    return local.year, local.month


def _submit(data: dict[str, Any], scope: str, openids: list[str]) -> dict[str, Any]:
    """Dedupe by clientmsgid, count the quota, deliver, and report the job later."""
    st, cfg = state(), sim().config
    client = data.get("clientmsgid")
    if client is not None and (not isinstance(client, str) or len(client.encode()) > 64):
        raise ApiError(45067)
    msgtype = data["msgtype"]
    if client is None:
        digest = json.dumps([scope, data[msgtype]], sort_keys=True, ensure_ascii=False)
        client = "digest:" + hashlib.sha256(digest.encode()).hexdigest()
    with st.lock:
        now = st.now()
        seen = st.mass_jobs.get(client)
        if seen is not None and (not client.startswith("digest:") or now - seen["at"] < 86400):
            return {"errcode": 45065, "errmsg": "clientmsgid exist", "msg_id": seen["msg_id"]}
        day_ago = now - 86400
        st.mass_calls = [t for t in st.mass_calls if t > day_ago]
        if len(st.mass_calls) >= cfg.mass_daily_calls:
            raise ApiError(45028, "daily mass-send calls used up")
        month = _month(now)
        if scope == "all":
            to_all = [j for j in st.mass_jobs.values() if j["to_all"] and _month(j["at"]) == month]
            if len(to_all) >= cfg.mass_per_user_month:
                raise ApiError(45028)
        msg_id = 1_000_000_000 + st.next_id()
        msg_data_id = 2_247_000_000 + st.next_id()
        st.mass_calls.append(now)
        st.mass_jobs[client] = {"msg_id": msg_id, "at": now, "to_all": scope == "all"}
        following = [o for o in openids if st.users.get(o) and st.users[o].subscribe]
        kept = []
        for openid in following:
            got = [t for t in st.mass_received[openid] if _month(t) == month]
            if len(got) < cfg.mass_per_user_month:
                kept.append(openid)
        status = cfg.mass_status
        if status == "send success":
            for openid in kept:
                st.mass_received[openid].append(now)
                st.deliver(f"openid:{openid}", "mass", data, msg_id=msg_id)
        counts = {
            "total": len(openids),
            "filter": len(kept),
            "sent": len(kept) if status == "send success" else 0,
            "error": 0,
        }
    sim().actors.mass_finished_later(msg_id, counts, status)
    return {
        "errcode": 0,
        "errmsg": "send job submission success",
        "msg_id": msg_id,
        "msg_data_id": msg_data_id,
    }


@bp.route("/cgi-bin/message/mass/sendall", methods=["GET", "POST"])
@api("oa", post=True)
def sendall() -> dict[str, Any]:
    data = body()
    flt = data.get("filter")
    if not isinstance(flt, dict):
        raise ApiError(47001, "missing filter")
    _content(data)
    st = state()
    if flt.get("is_to_all") is True:
        with st.lock:
            openids = sorted(st.users)
        return _submit(data, "all", openids)
    tag_id = flt.get("tag_id")
    if isinstance(tag_id, str) and tag_id.isdigit():
        tag_id = int(tag_id)
    with st.lock:
        if not isinstance(tag_id, int) or tag_id not in st.oa_tags:
            raise ApiError(45159)  # [unverified] for sendall
        openids = sorted(o for o, u in st.users.items() if tag_id in u.tagid_list)
    return _submit(data, f"tag:{tag_id}", openids)


@bp.route("/cgi-bin/message/mass/send", methods=["GET", "POST"])
@api("oa", post=True)
def send_by_openids() -> dict[str, Any]:
    data = body()
    touser = data.get("touser")
    if not isinstance(touser, list) or len(touser) < 2:
        raise ApiError(40130)
    if len(touser) > MAX_OPENIDS:
        raise ApiError(40032)  # [unverified] the code past 10,000 openids
    _content(data)
    st = state()
    with st.lock:
        for openid in touser:
            if not isinstance(openid, str) or openid not in st.users:
                raise ApiError(40003, str(openid))
    openids = sorted(set(touser))
    return _submit(data, "openids:" + ",".join(openids), openids)
