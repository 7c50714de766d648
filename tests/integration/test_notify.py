"""Alarms that reach a person (R15, R21, issue 39): a door's alarm stored centrally is
mailed to the people a rule names, through a real SMTP server (aiosmtpd) and Apprise; an
SMTP server that is down loses nothing (the notification waits in the store's outbox,
across a collector restart, and a failing channel is itself an alarm until it delivers);
what no rule names is not sent; the message carries no Individual Number (R11)."""

from __future__ import annotations

import email
import email.policy
import socket
import threading
import time
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from edged.simulators.fleet import FleetDevice

from edged.central.collector import Collector
from edged.central.notify import load_notify
from edged.errors import ConfigError, KeyFileError
from edged.protocol.keys import init_role_key, public_key_pem
from edged.protocol.mqtt import Broker

pytestmark = pytest.mark.integration


class Inbox:
    """What the SMTP server received, awaited without sleeping."""

    def __init__(self) -> None:
        self.mails: list[email.message.EmailMessage] = []
        self.arrived = threading.Condition()

    async def handle_DATA(self, server, session, envelope):  # aiosmtpd's handler hook
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self.arrived:
            self.mails.append(msg)  # type: ignore[arg-type]
            self.arrived.notify_all()
        return "250 OK"

    def wait(self, n: int, timeout: float = 30.0) -> None:
        with self.arrived:
            assert self.arrived.wait_for(lambda: len(self.mails) >= n, timeout), self.mails


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def notify_file(tmp: Path, port: int, mode: int = 0o600) -> Path:
    url = f"mailto://127.0.0.1:{port}?from=edged@example.jp&to=duty@example.jp&mode=insecure"
    p = tmp / "notify.toml"
    p.write_text(
        'console_url = "https://console.example.jp/"\n'
        f'[[rules]]\nname = "duty"\nalarms = ["door_*"]\nsites = ["tokyo"]\nurls = ["{url}"]\n'
    )
    p.chmod(mode)
    return p


@pytest.fixture
def central(tmp_path):
    """A door of site tokyo and one of osaka, trusted by a collector's directory."""
    key = init_role_key(tmp_path / "collector", "collector")
    doors = {s: FleetDevice(s, "door-1", Ed25519PrivateKey.generate()) for s in ("tokyo", "osaka")}
    for d in doors.values():
        (tmp_path / "trust" / d.site).mkdir(parents=True)
        (tmp_path / "trust" / d.site / "door-1.pub").write_text(public_key_pem(d.key.public_key()))
    return key, doors


def collector(tmp_path, key, cfg) -> Collector:
    return Collector(Broker("127.0.0.1", 1), tmp_path / "central.db", tmp_path / "trust", key,
                     notify=cfg)  # fmt: skip


def feed(col: Collector, door: FleetDevice) -> None:
    col.ingest_batch([(door.site, door.device, door.records[-1].wire())])


def test_an_alarm_is_mailed_and_an_smtp_server_down_loses_nothing(tmp_path, central):
    """R15, R21: the forced door at tokyo goes to the duty rule's mailbox, in Japanese with
    the site, the door, the time and a link to the console; while the SMTP server is down
    it waits (across a collector restart) and notify_failing is raised, then it arrives
    once and the condition clears; tamper and osaka's forced door match no rule."""
    key, doors = central
    port = free_port()
    cfg = load_notify(notify_file(tmp_path, port))
    col = collector(tmp_path, key, cfg)
    doors["tokyo"].append("alarm.door_forced", {"door": "main"})
    doors["tokyo"].append("alarm.tamper", {})
    doors["osaka"].append("alarm.door_forced", {"door": "main"})
    for d, n in ((doors["tokyo"], 2), (doors["osaka"], 1)):
        col.ingest_batch([(d.site, d.device, r.wire()) for r in d.records[-n:]])
    [row] = col.store.outbox.rows()
    assert (row["site"], row["type"], row["delivered_ts"]) == ("tokyo", "door_forced", None)
    assert col.notifier is not None and col.notifier.deliver_due() == (0, 1)  # nobody listens
    [row] = col.store.outbox.rows()
    assert row["attempts"] == 1 and row["last_error"] and row["delivered_ts"] is None
    failing = [a for a in col.store.alarms.rows() if a["type"] == "notify_failing"]
    assert failing and failing[0]["cleared_ts"] is None, failing
    col.close()

    inbox = Inbox()
    smtp = Controller(inbox, hostname="127.0.0.1", port=port)
    smtp.start()
    try:
        col = collector(tmp_path, key, cfg)  # a restart: the outbox is in the store
        assert col.notifier is not None
        assert col.notifier.deliver_due(time.time() + 60) == (1, 0)  # its retry is due
        inbox.wait(1)
        [mail] = inbox.mails
        assert "扉のこじ開け" in mail["Subject"] and "tokyo/door-1" in mail["Subject"]
        body = mail.get_body(preferencelist=("plain",)).get_content()
        assert "扉 main" in body and "https://console.example.jp/alarms" in body
        assert "tokyo / door-1" in body and doors["tokyo"].records[-2].fields["ts"][:16] in body
        [row] = col.store.outbox.rows()
        assert row["delivered_ts"] and row["attempts"] == 2
        failing = [a for a in col.store.alarms.rows() if a["type"] == "notify_failing"]
        assert failing and failing[0]["cleared_ts"] is not None, failing
        assert col.notifier.deliver_due(time.time() + 3600) == (0, 0)  # once, not again
        # Running as a service: the next forced door is delivered by the notify thread.
        col.start()
        doors["tokyo"].append("alarm.door_forced", {"door": "server"})
        feed(col, doors["tokyo"])
        inbox.wait(2)
        assert "扉 server" in inbox.mails[1].get_body(preferencelist=("plain",)).get_content()
        col.close()
    finally:
        smtp.stop()


def test_the_notify_file_is_checked_and_kept_private(tmp_path):
    """R12: the file holds credentials: readable by others is refused; a bad key, a rule
    without a channel or an unknown language is one line naming it."""
    with pytest.raises(KeyFileError):
        load_notify(notify_file(tmp_path, 25, mode=0o644))
    for text, needle in (
        ("[[rules]]\nurls = []\n", "rules[0].urls: a rule needs at least one channel"),
        ('[[rules]]\nurls = ["json://x"]\nlang = "fr"\n', "rules[0].lang: must be one of"),
        ('[[rules]]\nurls = ["json://x"]\nsms = 1\n', "rules[0].sms: unknown key"),
        ("volume = 3\n", "volume: unknown key"),
    ):
        p = tmp_path / "n.toml"
        p.write_text(text)
        p.chmod(0o600)
        with pytest.raises(ConfigError, match=needle.replace("[", r"\[").replace("]", r"\]")):
            load_notify(p)


def test_a_door_closed_again_clears_its_alarm_instead_of_listing_a_new_one(tmp_path, central):
    """R8, R15 (issue 40): the device's alarm.cleared ended the held-open alarm of its door
    on the door, but the central side stored it as an alarm of its own ("cleared") and
    left the held-open one open. Now the one it names is cleared, another door's stays."""
    key, doors = central
    col = collector(tmp_path, key, None)
    d = doors["tokyo"]
    d.append("alarm.door_held_open", {"door": "main", "seconds": 30})
    d.append("alarm.door_held_open", {"door": "server", "seconds": 30})
    d.append("alarm.cleared", {"door": "main", "was": "held_open"})
    col.ingest_batch([(d.site, d.device, r.wire()) for r in d.records])
    rows = col.store.alarms.rows()
    assert [(a["type"], a["cleared_ts"] is not None) for a in rows] == [
        ("door_held_open", True), ("door_held_open", False)]  # fmt: skip
    assert "door=server" in rows[1]["detail"]
    col.close()


def test_a_cabinet_locked_again_clears_its_open_too_long_alarm(tmp_path, central):
    """R7, R15: the cabinet's alarm.cleared ends its open-too-long alarm centrally."""
    key, doors = central
    col = collector(tmp_path, key, None)
    d = doors["tokyo"]
    d.append("alarm.cabinet_open_too_long", {"cabinet": "cab-a", "area": "handling",
                                             "minutes": 60, "inside": []})  # fmt: skip
    d.append("alarm.cleared", {"cabinet": "cab-a", "area": "handling",
                               "was": "cabinet_open_too_long"})  # fmt: skip
    col.ingest_batch([(d.site, d.device, r.wire()) for r in d.records])
    [a] = col.store.alarms.rows()
    assert a["type"] == "cabinet_open_too_long" and a["cleared_ts"] is not None
    col.close()
