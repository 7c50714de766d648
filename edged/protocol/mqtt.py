"""Broker connection settings as small typed values, and the one paho client factory
that the device's sync agent, ``edged doctor``, the collector and ``edged acl publish``
all use: TLS files and credentials are applied in one place."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt

from edged.errors import ConfigError


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
    broker: Broker, client_id: str = "", *, reconnect_on_failure: bool = False
) -> mqtt.Client:
    """A paho client (MQTT 3.1.1, clean session) with ``broker``'s TLS and credentials."""
    c = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=client_id,
        clean_session=True,
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
