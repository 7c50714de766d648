"""The MQTT topic tree, v1 (see docs/mqtt.md)."""

from __future__ import annotations

import re

PREFIX = "edged/v1"
# A site's or a device's name: one topic level, a file name in the trust directory, a
# part of a download's name. Matched whole (fullmatch: "$" would let a newline through).
NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")


def base(site: str, device: str) -> str:
    return f"{PREFIX}/{site}/{device}"


def event(site: str, device: str, rtype: str) -> str:
    return f"{base(site, device)}/event/{rtype}"


def alarm(site: str, device: str, rtype: str) -> str:
    return f"{base(site, device)}/alarm/{rtype}"


def leaf(site: str, device: str, name: str) -> str:
    """status, checkpoint, heartbeat, acl, cmd, receipt."""
    return f"{base(site, device)}/{name}"


def parse(topic: str) -> tuple[str, str, str] | None:
    """(site, device, rest) of an edged topic, or None."""
    parts = topic.split("/", 4)
    if len(parts) < 5 or f"{parts[0]}/{parts[1]}" != PREFIX:
        return None
    return parts[2], parts[3], parts[4]
