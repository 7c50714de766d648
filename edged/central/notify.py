"""Alarms that reach a person (R15, issue 39): the central side sends every alarm that a
rule matches to that rule's channels, whether or not anyone has the console open.

- Rules (a TOML file, ``edged collect --notify FILE``, 0600: it holds credentials) map
  alarm types and sites to channels, each an Apprise URL (``mailto://``, ``msteams://``,
  ``slack://``, ``line://``, ``ntfy://``, ``json://`` webhooks...): one maintained library
  for every channel instead of a hand-written client each.
- At least once, across restarts: a notification is a row of the store's outbox written
  in the same transaction as the alarm it announces, and delivered after that commit,
  retried with backoff until the channel takes it. Each delivery and each failure stay on
  the row. A channel that fails is itself an alarm (``notify_failing``), cleared by its
  next delivery.
- Messages in Japanese or English (``lang`` per rule) from :mod:`edged.words`: the site,
  the device, the time, what happened, and a link to the console. No Individual Number,
  PIN or raw card number: alarm records carry none (card fingerprints at most), and a
  message that looked like one would be refused before it is queued (R11).
"""

from __future__ import annotations

import fnmatch
import threading
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edged.errors import ConfigError
from edged.log import get_logger
from edged.protocol.keys import check_private_file
from edged.protocol.privacy import contains_individual_number
from edged.protocol.records import format_ts
from edged.words import alarm_sentence, alarm_title

log = get_logger("notify")

# Retries: 5 s doubling to at most 5 minutes; a notification is never given up (an SMTP
# server down for an hour delivers its mail when it is back).
FIRST_RETRY_S, MAX_RETRY_S = 5.0, 300.0
FAILING = "notify_failing"

# send(url, title, body) -> None, raising on failure.
Send = Callable[[str, str, str], None]


@dataclass(frozen=True)
class Rule:
    """Alarm types (patterns of the type without ``alarm.``: ``door_*``, ``*``) of some
    sites (none: all) go to ``urls``, written in ``lang``."""

    name: str
    alarms: tuple[str, ...]
    sites: tuple[str, ...]
    urls: tuple[str, ...]
    lang: str = "ja"

    def matches(self, site: str, atype: str) -> bool:
        if self.sites and site not in self.sites:
            return False
        return any(fnmatch.fnmatchcase(atype, p) for p in self.alarms)


@dataclass(frozen=True)
class NotifyConfig:
    rules: tuple[Rule, ...]
    console_url: str = ""


def load_notify(path: Path) -> NotifyConfig:
    """The notify file, checked: one-line errors naming the file, the key and the reason."""
    check_private_file(path)  # credentials: refused when others may read it
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"{path}: cannot read it as TOML ({e})") from None
    unknown = set(doc) - {"rules", "console_url"}
    if unknown:
        raise ConfigError(f"{path}: {sorted(unknown)[0]}: unknown key")
    rules = []
    for i, r in enumerate(doc.get("rules") or []):
        where = f"{path}: rules[{i}]"
        if not isinstance(r, dict):
            raise ConfigError(f"{where}: expected a table")
        bad = set(r) - {"name", "alarms", "sites", "urls", "lang"}
        if bad:
            raise ConfigError(f"{where}.{sorted(bad)[0]}: unknown key")
        lists = {}
        for key in ("alarms", "sites", "urls"):
            v = r.get(key, ["*"] if key == "alarms" else [])
            if not isinstance(v, list) or not all(isinstance(x, str) and x for x in v):
                raise ConfigError(f"{where}.{key}: expected a list of strings")
            lists[key] = tuple(v)
        if not lists["urls"]:
            raise ConfigError(f"{where}.urls: a rule needs at least one channel URL")
        lang = r.get("lang", "ja")
        if lang not in ("ja", "en"):
            raise ConfigError(f"{where}.lang: must be one of ['ja', 'en'], got {lang!r}")
        name = r.get("name", f"rule{i}")
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{where}.name: expected a string")
        rules.append(Rule(name, lists["alarms"], lists["sites"], lists["urls"], lang))
    url = doc.get("console_url", "")
    if not isinstance(url, str):
        raise ConfigError(f"{path}: console_url: expected a string")
    return NotifyConfig(tuple(rules), url.rstrip("/"))


def apprise_send(url: str, title: str, body: str) -> None:
    """Deliver through Apprise; an exception says it was not delivered."""
    import apprise

    ap = apprise.Apprise()
    if not ap.add(url):
        raise ConfigError("a channel URL Apprise does not understand")
    if not ap.notify(title=title, body=body):
        raise RuntimeError("the channel did not take the message")


class Notifier:
    """Queues notifications with alarms (called under the collector's lock, in its
    transaction) and delivers what is due (its own thread; the store under ``lock``)."""

    def __init__(
        self,
        cfg: NotifyConfig,
        store: Any,
        lock: Any,
        *,
        send: Send = apprise_send,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.cfg, self.store, self._lock = cfg, store, lock
        self._send, self._clock = send, clock
        self._raise: Callable[[tuple[str, str], str, bool, str], None] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.wake = threading.Event()

    def on_failing(self, condition: Callable[[tuple[str, str], str, bool, str], None]) -> None:
        """Where a failing channel is raised and cleared (the collector's alarms)."""
        self._raise = condition

    def enqueue(self, ts: str, dev: tuple[str, str], atype: str, fields: dict[str, Any]) -> None:
        """An alarm being stored: one outbox row per matching rule's channel."""
        atype = atype.removeprefix("alarm.")
        if atype == FAILING:
            return  # a failing channel is not announced through the channels themselves
        for rule in self.cfg.rules:
            if not rule.matches(dev[0], atype):
                continue
            title, body = self.message(rule.lang, ts, dev, atype, fields)
            if contains_individual_number(title + body):
                log.error("notify_refused", reason="individual_number", type=atype)
                continue
            now_ms = int(self._clock() * 1000)
            for i in range(len(rule.urls)):
                self.store.outbox.add(ts, dev, atype, rule.name, i, title, body, now_ms)
        self.wake.set()

    def message(
        self, lang: str, ts: str, dev: tuple[str, str], atype: str, fields: dict[str, Any]
    ) -> tuple[str, str]:
        site, device = dev
        title = f"[edged] {alarm_title(atype, lang)} — {site}/{device}"
        when, where = ("日時", "場所") if lang == "ja" else ("Time", "Where")
        lines = [
            alarm_sentence(atype, fields, lang),
            f"{when}: {ts}",
            f"{where}: {site} / {device}",
        ]
        if self.cfg.console_url:
            lines.append(f"{self.cfg.console_url}/alarms")
        return title, "\n".join(lines)

    # -- delivery --------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="notify", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self.wake.set()
        if self._thread is not None:
            self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.deliver_due()
            except Exception as e:  # the store away a moment: try again on the next round
                log.error("notify_round_failed", error=repr(e)[:300])
            self.wake.wait(1.0)
            self.wake.clear()

    def deliver_due(self, now: float | None = None) -> tuple[int, int]:
        """Send what is due at ``now`` (default: the clock's now); (delivered, failed)."""
        now = self._clock() if now is None else now
        with self._lock:
            rows = self.store.outbox.due(int(now * 1000))
            self.store.commit()
        sent = failed = 0
        for row in rows:
            rule = next((r for r in self.cfg.rules if r.name == row["rule"]), None)
            if rule is None or row["channel"] >= len(rule.urls):
                result: str | None = "the rule or channel is no longer in the notify file"
            else:
                result = self._try(rule.urls[row["channel"]], row["title"], row["body"])
            with self._lock:
                ts = format_ts(int(self._clock() * 1000))
                if result is None:
                    self.store.outbox.delivered(row["id"], ts)
                    sent += 1
                else:
                    delay = min(MAX_RETRY_S, FIRST_RETRY_S * 2 ** min(row["attempts"], 10))
                    self.store.outbox.failed(row["id"], result, int((now + delay) * 1000))
                    failed += 1
                self._channel(row["rule"], row["channel"], result)
                self.store.commit()
        return sent, failed

    def _try(self, url: str, title: str, body: str) -> str | None:
        try:
            self._send(url, title, body)
        except Exception as e:  # any channel's failure is a retry, never a lost alarm
            log.warning("notify_failed", error=repr(e)[:200])
            return repr(e)[:300]
        return None

    def _channel(self, rule: str, channel: int, error: str | None) -> None:
        if self._raise is not None:
            dev = ("_central", f"notify-{rule}-{channel}")
            self._raise(dev, FAILING, error is not None, error or "delivered")
