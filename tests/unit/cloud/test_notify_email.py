"""The e-mail channel against an in-test SMTP server (stdlib socketserver; RFC 5321 and STARTTLS, RFC 3207)."""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import email
import email.policy
import ipaddress
import socketserver
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from cloud.alerting.errors import DeliveryError
from cloud.alerting.notify.channels import build_channel
from cloud.alerting.notify.email import EmailChannel
from tests.unit.cloud.test_notify import page


@dataclass
class Mailbox:
    """What the server received, and how it should answer RCPT TO."""

    port: int = 0
    messages: list[tuple[str, list[str], bytes]] = field(default_factory=list)
    logins: list[str] = field(default_factory=list)
    tls_used: list[bool] = field(default_factory=list)
    rcpt_reply: str = "250 OK"


class _Handler(socketserver.StreamRequestHandler):
    server: _Server

    def reply(self, line: str) -> None:
        self.wfile.write(line.encode() + b"\r\n")
        self.wfile.flush()

    def handle(self) -> None:
        box, tls = self.server.mailbox, False
        rfile: Any = self.rfile
        sender, recipients = "", list[str]()
        self.reply("220 test.local ESMTP")
        while True:
            raw = rfile.readline()
            if not raw:
                return
            command = raw.decode().rstrip("\r\n")
            verb = command.split(" ", 1)[0].upper()
            if verb in ("EHLO", "HELO"):
                features = ["250-test.local", "250-AUTH PLAIN"]
                if self.server.context is not None and not tls:
                    features.append("250-STARTTLS")
                self.reply("\r\n".join([*features, "250 8BITMIME"]))
            elif verb == "STARTTLS" and self.server.context is not None:
                self.reply("220 Go ahead")
                conn = self.server.context.wrap_socket(self.connection, server_side=True)
                self.connection = conn
                rfile, self.wfile = conn.makefile("rb"), conn.makefile("wb")
                tls = True
            elif verb == "AUTH":
                self.server.mailbox.logins.append(base64.b64decode(command.split()[-1]).decode())
                self.reply("235 Authenticated")
            elif verb == "MAIL":
                sender, recipients = command.split(":", 1)[1].strip().strip("<>"), []
                self.reply("250 OK")
            elif verb == "RCPT":
                recipients.append(command.split(":", 1)[1].strip().strip("<>"))
                self.reply(box.rcpt_reply)
            elif verb == "DATA":
                self.reply("354 End data with <CR><LF>.<CR><LF>")
                lines = []
                while (line := rfile.readline()) not in (b".\r\n", b""):
                    lines.append(line[1:] if line.startswith(b"..") else line)
                box.messages.append((sender, recipients, b"".join(lines)))
                box.tls_used.append(tls)
                self.reply("250 Queued")
            elif verb == "QUIT":
                self.reply("221 Bye")
                return
            else:
                self.reply("250 OK")


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, mailbox: Mailbox, context: ssl.SSLContext | None) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.mailbox = mailbox
        self.context = context

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that gave up (a refused certificate) is what some tests want: no traceback."""


@contextlib.contextmanager
def smtp_server(context: ssl.SSLContext | None = None, **kwargs: Any) -> Iterator[Mailbox]:
    mailbox = Mailbox(**kwargs)
    server = _Server(mailbox, context)
    mailbox.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    try:
        yield mailbox
    finally:
        server.shutdown()
        server.server_close()


def certificates(directory: Path) -> tuple[Path, ssl.SSLContext]:
    """A test CA and a server certificate for 127.0.0.1 signed by it: (CA file, server context)."""
    now = dt.datetime.now(dt.UTC)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    ca_key, server_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(name("test CA")).issuer_name(name("test CA"))
          .public_key(ca_key.public_key()).serial_number(1).not_valid_before(now - dt.timedelta(hours=1))
          .not_valid_after(now + dt.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    leaf = (x509.CertificateBuilder().subject_name(name("127.0.0.1")).issuer_name(ca.subject)
            .public_key(server_key.public_key()).serial_number(2).not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    ca_file, cert_file, key_file = directory / "ca.pem", directory / "server.pem", directory / "server.key"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(server_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                  serialization.NoEncryption()))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    return ca_file, context


def parsed(raw: bytes) -> EmailMessage:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def test_a_page_is_mailed_over_starttls_with_login(tmp_path: Path) -> None:
    ca_file, context = certificates(tmp_path)
    with smtp_server(context) as box:
        channel = build_channel("email", {"host": "127.0.0.1", "port": box.port, "sender": "alarms@telemed.example",
                                          "username": "pager", "password": "pw", "cafile": str(ca_file)})
        channel.send(page(), "dr.wang@hospital.example")
    (sender, recipients, raw), = box.messages
    assert box.tls_used == [True] and box.logins == ["\0pager\0pw"]
    assert sender == "alarms@telemed.example" and recipients == ["dr.wang@hospital.example"]
    message = parsed(raw)
    assert message["Subject"] == "[telemed] [HIGH 高] spo2_low · 安县人民医院 · ICU · 3床 bed 3 · pt-0042"
    assert message["X-Telemed-Incident"] == "5b1d2c3e-0000-5000-8000-000000000001"
    body = message.get_content()
    assert "内容 Alarm: SpO2 low: 87 % (< 90 % for 15 s)" in body and "2026-03-02 08:15:03 CST" in body


def test_a_server_certificate_not_signed_by_the_trusted_ca_is_refused(tmp_path: Path) -> None:
    (tmp_path / "server").mkdir()
    (tmp_path / "other").mkdir()
    _, context = certificates(tmp_path / "server")
    other_ca, _ = certificates(tmp_path / "other")
    with smtp_server(context) as box, pytest.raises(DeliveryError) as failure:
        EmailChannel("127.0.0.1", box.port, "alarms@telemed.example", cafile=other_ca).send(page(), "a@b.example")
    assert not failure.value.transient and box.messages == []


def test_plain_smtp_without_starttls_when_configured_so() -> None:
    with smtp_server() as box:
        EmailChannel("127.0.0.1", box.port, "alarms@telemed.example", starttls=False).send(page(), "a@b.example")
    assert box.tls_used == [False] and len(box.messages) == 1


@pytest.mark.parametrize(("reply", "transient"), [("550 5.1.1 No such user", False),
                                                  ("451 4.3.0 Try again later", True)])
def test_refused_recipients_are_permanent_and_temporary_failures_transient(reply: str, transient: bool) -> None:
    with smtp_server(rcpt_reply=reply) as box, pytest.raises(DeliveryError) as failure:
        EmailChannel("127.0.0.1", box.port, "alarms@telemed.example", starttls=False).send(page(), "a@b.example")
    assert failure.value.transient is transient and box.messages == []


def test_a_user_without_an_address_cannot_be_mailed() -> None:
    with pytest.raises(DeliveryError) as failure:
        EmailChannel("127.0.0.1", 25, "alarms@telemed.example").send(page(), None)
    assert not failure.value.transient
