"""The web console on the central store: who is inside, alarms (live, acknowledged with a
comment), devices, the ledger across doors, the console's own audit trail. Server-rendered
pages (Starlette, Jinja2), one small vendored script for live alarms (server-sent events),
nothing loaded from elsewhere. Every page needs a session; every form a CSRF token; every
action is in the hash-chained audit trail (R15, R16, R21)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
import secrets
import threading
import time
import zoneinfo
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import quote, urlencode

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Send
from starlette.types import Scope as Scope_

from edged.central.console.auth import (
    COOKIE,
    DUMMY_HASH,
    LOCK_MS,
    MAX_FAILED,
    SESSION_IDLE_MS,
    check_password,
    new_token,
    role_allows,
    token_hash,
)
from edged.central.console.guard import Budget, Network, client_address
from edged.central.ledger import LedgerCache, central_ledger
from edged.central.store import CentralStore, open_store
from edged.ledger import PdfUnavailable, Scope, to_csv, to_html, to_pdf
from edged.protocol.records import format_ts
from edged.protocol.topics import NAME
from edged.words import alarm_sentence, alarm_title, fields_of_detail

HERE = Path(__file__).parent
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self';"
    " connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
# The largest file a form may carry (a signed access list).
MAX_UPLOAD = 4 << 20
# A device not heard from for this long is in trouble (three missed heartbeats and more).
TROUBLE_MS = 180_000
# Visits shown on one screen of the ledger (downloads hold them all).
PER_PAGE = 500
DOWNLOADS = {"csv": "text/csv", "html": "text/html", "pdf": "application/pdf"}
# Login attempts per client address and minute, whatever the user name.
PER_ADDRESS = 20
PER_ACCOUNT = 10

LABELS = {
    "en": {
        "overview": "Overview", "alarms": "Alarms", "ledger": "Ledger", "audit": "Audit trail",
        "logout": "Log out", "login": "Log in", "user": "User", "password": "Password",
        "inside": "Inside now", "devices": "Devices", "active": "Active alarms",
        "ack": "Acknowledge", "comment": "Comment", "acked": "Acknowledged",
        "heard": "Last heard", "backlog": "Backlog", "clock": "Clock", "none": "none",
        "reviews": "Reviews", "signoff": "Sign off", "method": "How", "findings": "Findings",
        "time": "Time", "where": "Site / device", "type": "Type", "detail": "Detail",
        "source": "Source", "site": "Site", "area": "Area", "name": "Name", "device": "Device",
        "head": "Head", "stored": "Stored", "receipted": "Receipted", "journal": "Journal",
        "acl_state": "Access list published / applied", "entry": "Entry", "exit": "Exit",
        "purpose": "Purpose", "from": "From", "to": "To", "show": "Show", "person": "Person",
        "door": "Door", "reviewer": "Reviewer", "period": "Period", "action": "Action",
        "acl": "Access lists", "envelope": "Signed envelope (edged acl sign)",
        "publish": "Publish", "ok": "ok", "unsynced": "NOT synced", "down": "DOWN",
        "since": "Since", "cabinet": "Cabinet", "checkpoint": "Checkpoint",
        "key": "Signing key", "state_open": "OPEN", "state_closed": "closed",
        "state_locked": "locked", "pdf": "PDF", "doors": "Doors",
        "sites": "Sites", "open_doors": "Doors open", "open_cabinets": "Cabinets open",
        "trouble": "Devices in trouble",
    },
    "ja": {
        "overview": "概要", "alarms": "警報", "ledger": "入退室管理表", "audit": "操作記録",
        "logout": "ログアウト", "login": "ログイン", "user": "利用者", "password": "パスワード",
        "inside": "在室者", "devices": "装置", "active": "未対応の警報",
        "ack": "確認", "comment": "コメント", "acked": "確認済",
        "heard": "最終受信", "backlog": "未送信", "clock": "時刻同期", "none": "なし",
        "reviews": "点検記録", "signoff": "点検を記録", "method": "点検方法", "findings": "所見",
        "time": "日時", "where": "拠点 / 装置", "type": "種別", "detail": "内容",
        "source": "発生元", "site": "拠点", "area": "区域", "name": "氏名", "device": "装置",
        "head": "最新記録", "stored": "保存済", "receipted": "受領済", "journal": "記録",
        "acl_state": "権限表 公開 / 適用", "entry": "入室", "exit": "退室",
        "purpose": "入室理由", "from": "開始", "to": "終了", "show": "表示", "person": "個人",
        "door": "扉", "reviewer": "点検者", "period": "期間", "action": "操作",
        "acl": "権限表", "envelope": "署名済みの権限表 (edged acl sign)",
        "publish": "公開", "ok": "正常", "unsynced": "未同期", "down": "停止",
        "since": "入室時刻", "cabinet": "キャビネット", "checkpoint": "チェックポイント",
        "key": "署名鍵", "state_open": "開", "state_closed": "閉",
        "state_locked": "施錠", "pdf": "PDF", "doors": "扉",
        "sites": "拠点", "open_doors": "開いている扉", "open_cabinets": "開いている書庫",
        "trouble": "異常のある装置",
    },
}  # fmt: skip


class Console:
    """The console's state: one store connection (used under a lock), its settings.
    ``broker`` and ``admin_key``: where signed access lists are published, and the public
    key they must be signed with (the private key never comes near the console)."""

    def __init__(
        self,
        store: CentralStore,
        tz: str = "Asia/Tokyo",
        *,
        broker: Any = None,
        admin_key: Any = None,
        trusted_proxies: Sequence[Network] = (),
        idle_ms: int = SESSION_IDLE_MS,
    ) -> None:
        self.store = store
        self.broker = broker
        self.admin_key = admin_key
        self.tz = zoneinfo.ZoneInfo(tz)
        self.lock = threading.Lock()
        self.ledgers = LedgerCache()  # used under the lock
        self.trusted_proxies = tuple(trusted_proxies)
        self.idle_ms = idle_ms
        # Login tries a minute from one address, and for one account from anywhere (a
        # locked account stops its guesses; this also bounds names that do not exist).
        self.by_address, self.by_account = Budget(PER_ADDRESS), Budget(PER_ACCOUNT)
        self.env = Environment(
            loader=FileSystemLoader(HERE / "templates"),
            autoescape=select_autoescape(["html"]),
            auto_reload=False,  # the templates are the installed package's
        )

    def db(self, fn: Callable[[CentralStore], Any]) -> Any:
        with self.lock:
            try:
                return fn(self.store)
            finally:
                self.store.commit()

    def local(self, ts: str | None) -> str:
        if not ts:
            return ""
        try:
            t = dt.datetime.fromisoformat(ts)  # "…Z" (3.11+); strptime was half a page's time
        except ValueError:
            return ts
        t = t if t.tzinfo else t.replace(tzinfo=dt.UTC)
        return t.astimezone(self.tz).isoformat(" ", "seconds")[:19]

    def audit(self, user: str, action: str, detail: dict[str, Any]) -> None:
        now = format_ts(int(time.time() * 1000))
        text = json.dumps(detail, ensure_ascii=False, sort_keys=True)
        self.db(lambda s: s.accounts.audit(now, user, action, text))


def _worded(alarms: list[dict[str, Any]], lang: str) -> list[dict[str, Any]]:
    """Alarms with their title and sentence in ``lang`` (see edged.words)."""
    for a in alarms:
        a["title"] = alarm_title(a["type"], lang)
        a["sentence"] = alarm_sentence(a["type"], fields_of_detail(a["detail"]), lang)
    return alarms


def _session(c: Console, request: Request, *, touch: bool = True) -> dict[str, Any] | None:
    token = request.cookies.get(COOKIE)
    if not token:
        return None
    now = int(time.time() * 1000)
    return c.db(lambda s: s.accounts.session(token_hash(token), c.idle_ms, now, touch=touch))


def _address(c: Console, request: Request) -> str:
    """The client's address; a trusted proxy's X-Forwarded-For names it (guard.py)."""
    peer = request.client.host if request.client else None
    return client_address(peer, request.headers.getlist("x-forwarded-for"), c.trusted_proxies)


def _lang(request: Request) -> str:
    lang = request.query_params.get("lang") or request.cookies.get("edged_lang") or "ja"
    return lang if lang in LABELS else "ja"


def page(c: Console, request: Request, name: str, who: dict[str, Any], **ctx: Any) -> Response:
    lang = _lang(request)
    html = c.env.get_template(name).render(
        L=LABELS[lang], lang=lang, who=who, local=c.local, path=request.url.path, **ctx
    )
    resp = HTMLResponse(html)
    resp.set_cookie("edged_lang", lang, httponly=True, secure=True, samesite="strict")
    return resp


def needs(
    role: str, *, max_fields: int = 8
) -> Callable[[Callable[..., Response]], Callable[[Request], Any]]:
    """A page for ``role`` or above: no session, to the login page; too low a role, 403.
    A POST's form is read within bounds (one file, at most MAX_UPLOAD bytes of it, read
    here as bytes) and needs the session's CSRF token."""

    def wrap(fn: Callable[..., Response]) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> Response:
            c: Console = request.app.state.console
            if request.method != "POST":  # one trip to the worker thread: session and page
                return await asyncio.to_thread(_checked_get, fn, role, c, request)
            who = await asyncio.to_thread(_session, c, request)
            if who is None:
                return RedirectResponse("/login", status_code=303)
            if not role_allows(who["role"], role):
                return PlainTextResponse("forbidden for your role", status_code=403)
            if request.method == "POST":
                async with request.form(max_files=1, max_fields=max_fields) as form:
                    if not secrets.compare_digest(str(form.get("csrf", "")), who["csrf"]):
                        return PlainTextResponse("bad CSRF token", status_code=403)
                    fields = {
                        k: await v.read(MAX_UPLOAD + 1) if isinstance(v, UploadFile) else v
                        for k, v in form.items()
                    }
                return await asyncio.to_thread(fn, c, request, who, fields)
            return PlainTextResponse("method not allowed", status_code=405)

        return endpoint

    return wrap


def _checked_get(fn: Callable[..., Response], role: str, c: Console, request: Request) -> Response:
    who = _session(c, request)
    if who is None:
        return RedirectResponse("/login", status_code=303)
    if not role_allows(who["role"], role):
        return PlainTextResponse("forbidden for your role", status_code=403)
    return fn(c, request, who)


# -- login -------------------------------------------------------------------------------
async def login_form(request: Request) -> Response:
    return _login_page(request.app.state.console, request)


def _login_page(c: Console, request: Request, error: str = "", status: int = 200) -> Response:
    nonce = new_token()
    html = c.env.get_template("login.html").render(
        L=LABELS[_lang(request)], lang=_lang(request), csrf=nonce, error=error
    )
    resp = HTMLResponse(html, status_code=status)
    # Login CSRF: the form's token must match this cookie (double submit).
    resp.set_cookie("edged_login", nonce, httponly=True, secure=True, samesite="strict")
    return resp


async def login(request: Request) -> Response:
    c: Console = request.app.state.console
    form = await request.form()
    cookie = request.cookies.get("edged_login", "")
    if not cookie or not secrets.compare_digest(str(form.get("csrf", "")), cookie):
        return PlainTextResponse("bad CSRF token", status_code=403)
    name, password = str(form.get("user", ""))[:64], str(form.get("password", ""))[:256]
    addr = _address(c, request)
    if not c.by_address.spend(addr):
        return _login_failed(c, request, "too many attempts from this address; wait a minute")
    if not c.by_account.spend(name.casefold()):
        return _login_failed(c, request, "too many attempts for this account; wait a minute")
    ok, why = await asyncio.to_thread(_check_login, c, name, password, addr)
    if not ok:
        return _login_failed(c, request, why)
    token, csrf = new_token(), new_token()
    now_ms = int(time.time() * 1000)
    c.db(lambda s: s.accounts.add_session(token_hash(token), name, csrf, now_ms))
    c.audit(name, "login", {"address": addr})
    resp = RedirectResponse("/", status_code=303)
    resp.set_cookie(COOKIE, token, httponly=True, secure=True, samesite="strict")
    resp.delete_cookie("edged_login")
    return resp


def _check_login(c: Console, name: str, password: str, addr: str) -> tuple[bool, str]:
    """The verdict on one try. The try is counted as failed before the ~50 ms password
    check, in the store (accounts.py), so guesses sent together each count (R12)."""
    now_ms = int(time.time() * 1000)
    attempt = c.db(lambda s: s.accounts.begin_login(name, now_ms, MAX_FAILED, LOCK_MS))
    if not attempt.admitted:
        return False, "this account is locked after failed logins; try again later"
    user = c.db(lambda s: s.accounts.user(name))
    # An unknown name is checked against a dummy hash: the same time as a real try.
    ok = check_password(password, user["pw_hash"] if user else DUMMY_HASH) and user is not None
    if user is None:
        return False, "wrong user name or password"
    locked = c.db(lambda s: s.accounts.end_login(name, attempt, ok, now_ms, MAX_FAILED, LOCK_MS))
    if not ok:
        c.audit(name, "login_failed", {"locked": locked, "address": addr})
        return False, "wrong user name or password"
    return True, ""


def _login_failed(c: Console, request: Request, why: str) -> Response:
    return _login_page(c, request, why, 401)


@needs("viewer")
def logout(c: Console, request: Request, who: dict[str, Any], form: dict[str, Any]) -> Response:
    token = request.cookies.get(COOKIE, "")
    c.db(lambda s: s.accounts.drop_session(token_hash(token)))
    c.audit(who["name"], "logout", {})
    resp = RedirectResponse("/login", status_code=303)
    resp.delete_cookie(COOKIE)
    return resp


# -- pages -------------------------------------------------------------------------------
@needs("viewer")
def overview(c: Console, request: Request, who: dict[str, Any]) -> Response:
    """Alarms to act on; then every site in a line (people inside, doors and cabinets
    open, devices in trouble), or for one site (``?site=``, or the only one) its areas:
    who is inside and each door's and cabinet's state. Both are folded from every
    stored record as it was stored, so a page reads small tables, never the records."""
    now_ms = int(time.time() * 1000)
    site = request.query_params.get("site")
    summary, (alarms, last) = c.db(
        lambda s: (s.reports.site_summary(now_ms - TROUBLE_MS), s.alarms.active())
    )
    if site is None and len(summary) == 1:
        site = summary[0]["site"]
    areas: dict[str, dict[str, list[dict[str, Any]]]] = {}
    statuses: list[dict[str, Any]] = []
    if site is not None:
        people, points, statuses = c.db(
            lambda s: (
                s.reports.present_people(site),
                s.reports.present_points(site),
                s.reports.statuses(site),
            )
        )
        for key, rows in (("people", people), ("points", points)):
            for p in rows:
                areas.setdefault(p["area"], {"people": [], "points": []})[key].append(p)
    return page(
        c, request, "overview.html", who, summary=summary, site=site, areas=areas,
        statuses=statuses, alarms=_worded(alarms, _lang(request)), now_ms=now_ms, last=last,
        trouble_ms=TROUBLE_MS,
    )  # fmt: skip


@needs("viewer")
def alarms(c: Console, request: Request, who: dict[str, Any]) -> Response:
    rows = _worded(c.db(lambda s: s.alarms.after()), _lang(request))
    last = max((a["id"] for a in rows), default=0)
    return page(c, request, "alarms.html", who, alarms=rows, last=last)


@needs("auditor")
def ack(c: Console, request: Request, who: dict[str, Any], form: dict[str, Any]) -> Response:
    try:
        alarm_id = int(request.path_params["id"])
    except ValueError:
        return PlainTextResponse("no such alarm", status_code=404)
    comment = str(form.get("comment", ""))[:500]
    now = format_ts(int(time.time() * 1000))
    if c.db(lambda s: s.alarms.ack(alarm_id, who["name"], now, comment)):
        c.audit(who["name"], "alarm_ack", {"alarm": alarm_id, "comment": comment})
    return RedirectResponse("/alarms", status_code=303)


@needs("viewer")
def ledger(c: Console, request: Request, who: dict[str, Any]) -> Response:
    q = request.query_params
    site = q.get("site", "")
    today = dt.datetime.now(c.tz).date()
    try:
        start = dt.date.fromisoformat(q.get("from") or today.replace(day=1).isoformat())
        end = dt.date.fromisoformat(q.get("to") or today.isoformat())
    except ValueError:
        return PlainTextResponse("from/to: use YYYY-MM-DD", status_code=400)
    scope = Scope(q.get("area") or None, q.get("door") or None, q.get("person") or None)
    led = None
    if site:
        led = c.db(
            lambda s: central_ledger(s, site, start, end, str(c.tz), scope=scope, cache=c.ledgers)
        )
        fmt = q.get("format")
        if fmt in DOWNLOADS and not NAME.fullmatch(site):
            # Only a real site's ledger is a download; its name goes into a header.
            return PlainTextResponse("site: not a site name", status_code=400)
        if fmt in DOWNLOADS:
            generated = dt.datetime.now(c.tz).strftime("%Y-%m-%d %H:%M:%S %Z")
            body: str | bytes = (
                to_csv(led)
                if fmt == "csv"
                else to_html(led, lang=_lang(request), device=site, generated=generated)
            )
            if fmt == "pdf":
                try:
                    body = to_pdf(str(body))
                except PdfUnavailable as e:
                    return PlainTextResponse(str(e), status_code=503)
            c.audit(who["name"], "ledger_download", {"site": site, "from": str(start),
                                                      "to": str(end), "format": fmt})  # fmt: skip
            return Response(
                body,
                media_type=DOWNLOADS[fmt],
                headers={
                    "Content-Disposition": content_disposition(f"ledger-{site}-{start}-{end}.{fmt}")
                },
            )
    sites = sorted({site for site, _d, _last in c.db(lambda s: s.devices())} | {site} - {""})
    keep = ("site", "from", "to", "area", "door", "person")
    dl = urlencode({k: q.get(k) or "" for k in keep} | {"from": start, "to": end})
    try:
        first = max(0, int(q.get("first", "0")))
    except ValueError:
        first = 0
    return page(
        c, request, "ledger.html", who, led=led, site=site, sites=sites, start=start, end=end,
        q=dict(q), dl=dl, first=first, per_page=PER_PAGE,
    )  # fmt: skip


@needs("viewer")
def devices(c: Console, request: Request, who: dict[str, Any]) -> Response:
    """Each device: last heard, head and receipts, backlog, clock, journal, the access
    list published and applied, the best checkpoint seen."""
    statuses = {(s["site"], s["device"]): s for s in c.db(lambda s: s.reports.statuses())}
    acls = {(a["site"], a["device"]): a for a in c.db(lambda s: s.reports.acl_states())}
    heads = {(s, d): last for s, d, last in c.db(lambda s: s.devices())}
    newest = c.db(lambda s: s.reports.head_records())
    rows = []
    for dev in sorted(set(statuses) | set(heads) | set(acls)):
        st, acl, new = statuses.get(dev, {}), acls.get(dev, {}), newest.get(dev, {})
        # A device never heard from shows dashes, not a clock or journal "down".
        unknown = dict.fromkeys(
            ("heard_ms", "head_seq", "acked_seq", "backlog", "clock_synced", "journal_ok")
        )
        rows.append(
            {"site": dev[0], "device": dev[1], "stored": heads.get(dev, 0), **unknown, **st,
             "acl_published": acl.get("published_version"),
             "acl_applied": acl.get("applied_version"), "acl_applied_ts": acl.get("applied_ts"),
             "key_id": new.get("key_id"), "epoch": new.get("epoch"), "newest_ts": new.get("ts"),
             "checkpoint": new.get("checkpoint")}
        )  # fmt: skip
    return page(c, request, "devices.html", who, rows=rows, now_ms=int(time.time() * 1000))


@needs("auditor")
def reviews(c: Console, request: Request, who: dict[str, Any]) -> Response:
    """Reviews of the records signed off (R16: the check of the records is itself
    recorded, so that auditors can audit it)."""
    rows = [r for r in c.db(lambda s: s.accounts.audit_rows()) if r["action"] == "review_signoff"]
    for r in rows:
        r["review"] = json.loads(r["detail"])
    return page(c, request, "reviews.html", who, rows=rows[::-1])


@needs("auditor")
def review_signoff(
    c: Console, request: Request, who: dict[str, Any], form: dict[str, Any]
) -> Response:
    review = {k: str(form.get(k, ""))[:2000] for k in ("site", "from", "to", "method", "findings")}
    try:
        dt.date.fromisoformat(review["from"])
        dt.date.fromisoformat(review["to"])
    except ValueError:
        return PlainTextResponse("from/to: use YYYY-MM-DD", status_code=400)
    if not review["site"] or not review["method"]:
        return PlainTextResponse("site and method are required", status_code=400)
    c.audit(who["name"], "review_signoff", review)
    return RedirectResponse("/reviews", status_code=303)


@needs("admin")
def acl_page(c: Console, request: Request, who: dict[str, Any]) -> Response:
    states = c.db(lambda s: s.reports.acl_states())
    return page(
        c, request, "acl.html", who, states=states, message=request.query_params.get("m", "")
    )


@needs("admin", max_fields=4)
def acl_publish(
    c: Console, request: Request, who: dict[str, Any], form: dict[str, Any]
) -> Response:
    """Publish an access list signed offline with the admin key (R5, R21): checked here
    against the admin's public key, published retained to its device, and recorded."""
    from edged.protocol.signed import Rejected, parse_signed

    payload = form.get("envelope")
    payload = payload if isinstance(payload, bytes) else b""
    if c.broker is None or c.admin_key is None:
        return PlainTextResponse("start the console with --broker and --admin-pubkey", 400)
    try:
        doc = parse_signed(payload, c.admin_key, max_bytes=MAX_UPLOAD)
        site, device, version = doc.get("site"), doc.get("device"), doc.get("version")
        if not (isinstance(site, str) and isinstance(device, str) and type(version) is int):
            raise Rejected("malformed", "an envelope names its site, device and version")
    except Rejected as e:
        c.audit(who["name"], "acl_refused", {"reason": e.reason})
        return PlainTextResponse(f"refused: {e}", status_code=400)
    from edged.errors import PublishError
    from edged.protocol import topics
    from edged.protocol.mqtt import publish_confirmed

    try:
        publish_confirmed(c.broker, topics.leaf(site, device, "acl"), payload, retain=True)
    except PublishError as e:
        # Nothing went out: nothing is noted as published, and the admin is told why.
        why = {"site": site, "device": device, "version": version, "why": str(e)[:300]}
        c.audit(who["name"], "acl_publish_failed", why)
        return PlainTextResponse(f"not published: {e}", status_code=502)
    # Known centrally at once (a collector would note it too): the alarm for a list not
    # applied in time counts from now.
    now_ms = int(time.time() * 1000)
    c.db(lambda s: s.reports.note_acl_published((site, device), version, now_ms))
    c.audit(who["name"], "acl_publish", {"site": site, "device": device, "version": version})
    return RedirectResponse(f"/acl?m=published+version+{version}+to+{site}/{device}", 303)


@needs("auditor")
def audit_page(c: Console, request: Request, who: dict[str, Any]) -> Response:
    rows = c.db(lambda s: s.accounts.audit_rows())
    return page(c, request, "audit.html", who, rows=rows[::-1][:500])


def _poll(c: Console, token: str, after: int) -> tuple[dict[str, Any] | None, list[Any]]:
    """The stream's session as it is now (looked at, not used: an open page does not keep
    its session alive) and the alarms after ``after``, in one trip to the store."""
    now = int(time.time() * 1000)

    def both(s: CentralStore) -> tuple[dict[str, Any] | None, list[Any]]:
        who = s.accounts.session(token_hash(token), c.idle_ms, now, touch=False)
        return who, (s.alarms.after(after_id=after) if who is not None else [])

    return c.db(both)


async def events(request: Request) -> Response:
    """New alarms as server-sent events, for the open pages. The session is checked
    again before every batch is sent: after a logout, an idle expiry, the user's removal
    or a change of role the stream says ``end`` and closes (R12, R21)."""
    c: Console = request.app.state.console
    who = await asyncio.to_thread(_session, c, request)
    if who is None:
        return PlainTextResponse("no session", status_code=401)
    token = request.cookies.get(COOKIE, "")
    try:
        after = int(request.query_params.get("after", "0"))
    except ValueError:
        after = 0

    lang = _lang(request)

    async def stream() -> AsyncIterator[str]:
        last = after
        yield "retry: 2000\n\n"
        while not await request.is_disconnected():
            now_who, rows = await asyncio.to_thread(_poll, c, token, last)
            if now_who != who:  # ended, or another user or role behind the same token
                yield "event: end\ndata: {}\n\n"
                return
            for a in _worded(rows, lang):
                last = a["id"]
                a["local"] = c.local(a["ts"])
                yield f"id: {a['id']}\nevent: alarm\ndata: {json.dumps(a)}\n\n"
            await asyncio.sleep(0.5)

    return StreamingResponse(stream(), media_type="text/event-stream")


class Headers:
    """Strict headers on every answer. Plain ASGI: Starlette's BaseHTTPMiddleware runs
    each request through a task group and streams, which cost more than the page's own
    queries did."""

    STRICT: ClassVar[list[tuple[bytes, bytes]]] = [
        (b"content-security-policy", CSP.encode()),
        (b"x-content-type-options", b"nosniff"),
        (b"referrer-policy", b"no-referrer"),
        (b"x-frame-options", b"DENY"),
    ]

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope_, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = scope["path"].startswith("/static/")

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    (k, v) for k, v in message.get("headers", []) if k.lower() != b"cache-control"
                    or static
                ]  # fmt: skip
                headers += self.STRICT
                if not static:
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, with_headers)


def content_disposition(filename: str) -> str:
    """An attachment's header (RFC 6266): an ASCII name with anything outside a safe set
    replaced, and the exact name in RFC 5987's ``filename*`` (UTF-8, percent-encoded)."""
    ascii_name = re.sub(r"[^A-Za-z0-9._-]", "_", filename)
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename, safe='')}"


def create_app(
    store: str | CentralStore,
    *,
    tz: str = "Asia/Tokyo",
    broker: Any = None,
    admin_key: Any = None,
    trusted_proxies: Sequence[Network] = (),
    idle_ms: int = SESSION_IDLE_MS,
) -> Starlette:
    s = open_store(store) if isinstance(store, str) else store
    app = Starlette(
        routes=[
            Route("/login", login_form, methods=["GET"]),
            Route("/login", login, methods=["POST"]),
            Route("/logout", logout, methods=["POST"]),
            Route("/", overview),
            Route("/alarms", alarms),
            Route("/alarms/{id}/ack", ack, methods=["POST"]),
            Route("/ledger", ledger),
            Route("/audit", audit_page),
            Route("/devices", devices),
            Route("/acl", acl_page, methods=["GET"]),
            Route("/acl", acl_publish, methods=["POST"]),
            Route("/reviews", reviews, methods=["GET"]),
            Route("/reviews", review_signoff, methods=["POST"]),
            Route("/events", events),
            Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
        ],
        middleware=[Middleware(Headers)],
    )
    app.state.console = Console(
        s, tz, broker=broker, admin_key=admin_key, trusted_proxies=trusted_proxies,
        idle_ms=idle_ms,
    )  # fmt: skip
    return app
