"""Playing a preview's transcript against a running wxsim (``yuchi journeys preview
--sim-url``): the follower receives each message in its inbox through the simulator's Official
Account API, with the simulator's clock moved along and real seconds standing for simulated
days."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from bot.automation.preview_transcript import Line, Transcript
from bot.core.config import Settings
from bot.messaging.payloads import oa_request


@dataclass
class Played:
    """What the simulator did with a played transcript."""

    delivered: int = 0
    refused: list[tuple[Line, int, str]] = field(default_factory=list)
    not_sent: int = 0  # held, skipped or invalid in the transcript: the service sends nothing
    inbox: list[dict[str, Any]] = field(default_factory=list)


class SimulatorError(RuntimeError):
    """The simulator could not be reached or refused a control call."""


class SimulatorInbox:
    """Plays a transcript against a running wxsim: each message the transcript says goes out
    is sent, at its simulated time, through the simulator's Official Account API
    (``message/custom/send`` or ``template/send``) to the follower ``openid``, so it lands in
    their inbox; the simulator's clock moves with the transcript (and is put back at the end)
    while ``seconds_per_day`` real seconds stand for a simulated day.

    Only the simulator's control API (``/_sim/users``, ``/_sim/clock``) and its platform API
    are called: the follower is created and their interactions marked with ``/_sim/users``,
    never with callbacks, so Yuchi itself sees nothing and stores nothing. Passive replies
    are sent as customer-service messages (there is no callback to answer)."""

    def __init__(
        self,
        sim_url: str,
        settings: Settings,
        openid: str = "o_journey_preview",
        seconds_per_day: float = 1.0,
        sleep: Callable[[float], None] = time.sleep,
        timeout: float = 10.0,
    ) -> None:
        import requests

        self.base = sim_url.rstrip("/")
        self.settings, self.openid = settings, openid
        self.seconds_per_day, self.sleep, self.timeout = seconds_per_day, sleep, timeout
        self.http = requests.Session()
        self._token: str | None = None

    def _request(self, method: str, url: str, **kwargs: Any) -> tuple[int, dict[str, Any]]:
        import requests

        try:
            resp = self.http.request(method, url, timeout=self.timeout, **kwargs)
            data = resp.json()
        except (requests.RequestException, ValueError) as exc:
            raise SimulatorError(f"cannot reach the simulator at {self.base}: {exc}") from exc
        if not isinstance(data, dict):
            raise SimulatorError(f"the simulator answered {url} with {data!r}")
        return resp.status_code, data

    def _control(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        status, data = self._request(method, f"{self.base}/_sim{path}", **kwargs)
        if status >= 400:
            raise SimulatorError(f"simulator {path}: {data.get('error', status)}")
        return data

    def now(self) -> datetime:
        """The simulator's clock."""
        return datetime.fromtimestamp(self._control("GET", "/clock")["now"], UTC)

    def _token_for(self, stale: bool = False) -> str:
        if self._token is None or stale:
            params = {
                "grant_type": "client_credential",
                "appid": self.settings.oa_appid,
                "secret": self.settings.oa_secret,
            }
            _, body = self._request("GET", f"{self.base}/cgi-bin/token", params=params)
            if "access_token" not in body:
                raise SimulatorError(f"the simulator gave no access token: {body}")
            self._token = str(body["access_token"])
        return self._token

    def _send(self, line: Line) -> tuple[int, str]:
        """(errcode, errmsg) of the platform API call that delivers ``line``'s message."""
        kind, payload = line.detail["message_kind"], line.detail["payload"]
        path, body = oa_request(kind, payload, self.openid, f"preview-{uuid.uuid4().hex}")
        for attempt in (1, 2):
            _, data = self._request(
                "POST",
                f"{self.base}/cgi-bin/{path}",
                params={"access_token": self._token_for(stale=attempt == 2)},
                data=json.dumps(body, ensure_ascii=False).encode(),
            )
            code = int(data.get("errcode", 0) or 0)
            if code in (40001, 40014, 42001) and attempt == 1:
                continue  # the clock jumped past the token's expiry: fetch a new one
            return code, str(data.get("errmsg", ""))
        return 42001, "access token rejected twice"

    def _touch(self, last_interaction_ago: float | None) -> None:
        self._control(
            "POST",
            "/users",
            json={
                "openid": self.openid,
                "subscribe": True,
                "last_interaction_ago": last_interaction_ago,
            },
        )

    def play(
        self,
        transcript: Transcript,
        on_line: Callable[[Line, str | None], None] | None = None,
    ) -> Played:
        """Play every line in order, in accelerated time; ``on_line(line, outcome)`` after
        each (outcome: "送达模拟器", an error, or None for lines that send nothing)."""
        played = Played()
        offset = self._control("GET", "/clock")["offset"]
        before = transcript.last_interaction
        ago = (transcript.start - before).total_seconds() if before is not None else None
        self._touch(ago)
        interactions = sorted(transcript.interactions)
        clock = transcript.start
        try:
            for line in transcript.lines:
                gap = (line.at - clock).total_seconds()
                if gap > 0:
                    self.sleep(gap / 86400 * self.seconds_per_day)
                    self._control("POST", "/clock", json={"advance": gap})
                    clock = line.at
                while interactions and interactions[0] <= line.at:
                    self._touch((line.at - interactions.pop(0)).total_seconds())
                outcome = None
                if line.kind in ("send", "ask"):
                    if line.detail.get("status") != "sent":
                        played.not_sent += 1
                    else:
                        code, message = self._send(line)
                        if code == 0:
                            played.delivered += 1
                            outcome = "送达模拟器"
                        else:
                            played.refused.append((line, code, message))
                            outcome = f"模拟器拒绝：{code} {message}"
                if on_line is not None:
                    on_line(line, outcome)
        finally:
            self._control("POST", "/clock", json={"offset": offset})
        items = self._control("GET", "/inbox", params={"openid": self.openid})["messages"]
        played.inbox = items
        return played
