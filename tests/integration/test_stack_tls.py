"""The private broker with a TLS listener (certificates made on the fly with `cryptography`)."""

from __future__ import annotations

import datetime as dt
import ipaddress
import queue
import ssl
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from paho.mqtt.enums import CallbackAPIVersion

from deploy.mosquitto import MosquittoServer, MqttCredentials
from deploy.mosquitto_files import TlsListener

pytestmark = pytest.mark.integration


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_pki(directory: Path) -> TlsListener:
    """A CA and a server certificate for 127.0.0.1 signed by it, as PEM files."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder().subject_name(_name("telemed test CA")).issuer_name(_name("telemed test CA"))
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder().subject_name(_name("127.0.0.1")).issuer_name(ca_cert.subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = {name: directory / name for name in ("ca.pem", "server.pem", "server.key")}
    paths["ca.pem"].write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    paths["server.pem"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths["server.key"].write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    paths["server.key"].chmod(0o600)
    return TlsListener(port=0, cafile=paths["ca.pem"], certfile=paths["server.pem"], keyfile=paths["server.key"])


def tls_connect(port: int, login: MqttCredentials, ca: Path | None) -> bool:
    """Whether an MQTT v5 login over TLS succeeds (verifying the server against `ca`, or the system store)."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5, reconnect_on_failure=False)
    client.username_pw_set(login.username, login.password)
    client.tls_set(ca_certs=str(ca) if ca else None, tls_version=ssl.PROTOCOL_TLS_CLIENT)
    replies: queue.Queue[bool] = queue.Queue()
    client.on_connect = lambda c, u, flags, rc, props: replies.put(not rc.is_failure)
    try:
        client.connect("127.0.0.1", port)
    except ssl.SSLError:
        return False
    client.loop_start()
    try:
        return replies.get(timeout=10)
    finally:
        client.disconnect()
        client.loop_stop()


def test_tls_listener_serves_authenticated_clients_that_trust_the_ca(tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    with MosquittoServer(tmp_path / "broker", tls=pki) as broker:
        assert broker.tls_port is not None and broker.tls_port != broker.port
        assert tls_connect(broker.tls_port, broker.cloud, pki.cafile)
        assert not tls_connect(broker.tls_port, broker.cloud, None)  # our CA is not in the system store
        assert not tls_connect(broker.tls_port, MqttCredentials("cloud", "wrong"), pki.cafile)
        # The broker's account reads private copies, so the originals may stay private to us.
        assert (tmp_path / "broker" / "tls" / "key.pem").stat().st_mode & 0o077 == 0
