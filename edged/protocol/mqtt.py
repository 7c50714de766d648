"""Broker connection settings as small typed values, and the one paho client factory
that the device's sync agent, ``edged doctor``, the collector and ``edged acl publish``
all use: TLS files and credentials are applied in one place."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from edged.errors import ConfigError, PublishError


@dataclass(frozen=True)
class Tls:
    """TLS to the broker: the CA that signed its certificate, and a client certificate
    and key for mutual TLS (both or neither)."""

    ca_file: Path
    cert_file: Path | None = None
    key_file: Path | None = None


@dataclass(frozen=True)
class Broker:
    """Where the broker is and how to log in."""

    host: str
    port: int
    tls: Tls | None = None
    username: str | None = None
    password_file: Path | None = None

    @classmethod
    def parse(cls, address: str, **kw: object) -> Broker:
        """``HOST:PORT`` (an IPv6 host in brackets) and the other settings by keyword."""
        host, sep, port = address.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"broker {address!r}: expected HOST:PORT")
        return cls(host.strip("[]"), int(port), **kw)  # type: ignore[arg-type]

    def __str__(self) -> str:
        return f"{self.host}:{self.port}{' (TLS)' if self.tls else ''}"


def new_client(
    broker: Broker, client_id: str = "", *, reconnect_on_failure: bool = False, v5: bool = False
) -> mqtt.Client:
    """A paho client (MQTT 3.1.1, clean session; ``v5``: MQTT 5, whose acknowledgements
    carry a reason, so a publish the broker's ACL refuses is told from one it took) with
    ``broker``'s TLS and credentials."""
    c = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=client_id,
        clean_session=None if v5 else True,
        protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
        reconnect_on_failure=reconnect_on_failure,
    )
    if broker.tls is not None:
        t = broker.tls
        c.tls_set(
            ca_certs=str(t.ca_file),
            certfile=str(t.cert_file) if t.cert_file else None,
            keyfile=str(t.key_file) if t.key_file else None,
        )
    if broker.username:
        pw = broker.password_file.read_text().strip() if broker.password_file else None
        c.username_pw_set(broker.username, pw)
    return c


def publish_confirmed(
    broker: Broker, topic: str, payload: bytes, *, retain: bool = False, timeout: float = 10.0
) -> None:
    """Publish at QoS 1 and return only once the broker has acknowledged the message as
    taken; otherwise :class:`PublishError` saying why (unreachable, TLS, login refused,
    not authorised for the topic, no acknowledgement in time). What an administrator is
    told was published must be true: MQTT 5 is used because a 3.1.1 broker acknowledges
    a publish its ACL dropped exactly as one it kept."""
    c = new_client(broker, v5=True)
    answer: dict[str, Any] = {}
    connected, acked = threading.Event(), threading.Event()

    def on_connect(_c: Any, _u: Any, _f: Any, rc: Any, _p: Any = None) -> None:
        answer["connack"] = rc
        connected.set()

    def on_publish(_c: Any, _u: Any, mid: int, rc: Any, _p: Any = None) -> None:
        answer.setdefault("puback", {})[mid] = rc
        acked.set()

    c.on_connect, c.on_publish = on_connect, on_publish
    try:
        c.connect(broker.host, broker.port, keepalive=max(int(timeout) * 2, 10))
    except (OSError, ValueError) as e:  # refused, unreachable, TLS (ssl.SSLError), files
        raise PublishError(f"broker {broker}: cannot connect ({e})") from None
    c.loop_start()
    try:
        if not connected.wait(timeout):
            raise PublishError(f"broker {broker}: no answer to the login in {timeout:g} s")
        rc = answer["connack"]
        if rc.is_failure:
            raise PublishError(f"broker {broker}: refused the connection ({rc})")
        info = c.publish(topic, payload, qos=1, retain=retain)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise PublishError(f"broker {broker}: {mqtt.error_string(info.rc)}")
        if not acked.wait(timeout) or info.mid not in answer.get("puback", {}):
            raise PublishError(f"broker {broker}: no acknowledgement of {topic} in {timeout:g} s")
        rc = answer["puback"][info.mid]
        if rc.is_failure:
            raise PublishError(f"broker {broker}: refused {topic} ({rc})")
    finally:
        c.disconnect()
        c.loop_stop()
