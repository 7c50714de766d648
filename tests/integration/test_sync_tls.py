"""TLS to the broker with a CA and client certificates generated here (R12)."""

from __future__ import annotations

import pytest
from edged.simulators.mosquitto import MosquittoHarness

from edged.central.collector import Collector
from edged.protocol.mqtt import Broker, Tls
from tests.helpers.central import held
from tests.helpers.certs import make_pki
from tests.helpers.site import Running, Site

pytestmark = pytest.mark.integration


def test_records_flow_over_mutual_tls(tmp_path):
    """R12: the device talks to the broker over TLS with a client certificate; a client
    without one is refused by the broker."""
    from tests.conftest import require_pcscd

    require_pcscd()
    pki = make_pki(tmp_path / "pki")
    tls_conf = (
        f"cafile {pki['ca']}\ncertfile {pki['server']}\nkeyfile {pki['server_key']}\n"
        "require_certificate true\nuse_identity_as_username true\n"
    )
    broker = MosquittoHarness(tmp_path / "mq", extra_config=tls_conf)
    broker.start()
    try:
        site = Site(tmp_path, broker.port)
        site.config.write_text(
            site.config.read_text()
            + (
                f'tls = true\nca_file = "{pki["ca"]}"\ncert_file = "{pki["client"]}"\n'
                f'key_file = "{pki["client_key"]}"\n'
            )
        )
        col = Collector(
            Broker("127.0.0.1", broker.port, Tls(pki["ca"], pki["client"], pki["client_key"])),
            tmp_path / "central.db",
            site.trust,
            site.collector_key,
            receipt_seconds=0.2,
        )
        col.start()
        run = Running(site.cfg())
        try:
            assert run.d.sync.connected_event.wait(15)
            run.presses(5)
            head = run.head()
            assert col.wait_for(
                lambda: held(col).seqs("tokyo-hq", "door-3f-1") == list(range(1, head + 1)), 30
            )
        finally:
            run.stop()
            col.close()
        # Without a client certificate the broker refuses the connection.
        import ssl

        import paho.mqtt.client as mqtt

        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        c.tls_set(ca_certs=str(pki["ca"]))
        try:
            c.connect("127.0.0.1", broker.port)
            refused = c.loop(timeout=2) != mqtt.MQTT_ERR_SUCCESS or not c.is_connected()
        except (ssl.SSLError, OSError):
            refused = True
        assert refused
    finally:
        broker.stop()
