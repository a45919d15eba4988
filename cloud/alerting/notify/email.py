"""The e-mail channel: a plain-text message over SMTP (smtplib), with STARTTLS or implicit TLS.

STARTTLS (RFC 3207) upgrades a plain connection on the submission port (587); implicit TLS (RFC 8314,
port 465) is TLS from the first byte. Both verify the server's certificate against the system store or
`cafile`. Temporary SMTP failures (4xx replies, RFC 5321 section 4.2.1) and network errors are worth
another attempt; 5xx replies (unknown mailbox, relaying denied, authentication failed) are not.
"""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formataddr, make_msgid
from pathlib import Path
from typing import Final

from cloud.alerting.errors import ChannelConfigError, DeliveryError
from cloud.alerting.notify.page import Page


def _smtp_code_transient(code: int) -> bool:
    return 400 <= code < 500


def message(page: Page, *, sender: str, to: str) -> EmailMessage:
    """The e-mail for a page."""
    mail = EmailMessage()
    mail["Subject"] = f"[telemed] {page.title()}"
    mail["From"] = formataddr(("telemed 告警", sender))
    mail["To"] = to
    mail["Message-ID"] = make_msgid(idstring=str(page.delivery_id), domain=sender.rpartition("@")[2] or None)
    mail["X-Telemed-Incident"] = str(page.incident_id)
    mail["X-Priority"] = "1" if page.priority == "high" else "3"
    mail.set_content(page.text(), charset="utf-8")
    return mail


class EmailChannel:
    """Sends pages as e-mail through one SMTP server."""

    kind: Final = "email"

    def __init__(self, host: str, port: int, sender: str, *, starttls: bool = True, implicit_tls: bool = False,
                 username: str | None = None, password: str | None = None, timeout_s: float = 10.0,
                 cafile: Path | None = None) -> None:
        if not host or not 0 < port < 65536:
            raise ChannelConfigError(f"SMTP server must be a host and a port, got {host!r}:{port}")
        if "@" not in sender:
            raise ChannelConfigError(f"sender must be an e-mail address, got {sender!r}")
        if starttls and implicit_tls:
            raise ChannelConfigError("choose STARTTLS or implicit TLS, not both")
        if bool(username) != bool(password):
            raise ChannelConfigError("SMTP login needs both username and password")
        self.host, self.port, self.sender = host, port, sender
        self._starttls, self._implicit_tls = starttls, implicit_tls
        self._username, self._password = username, password
        self._timeout_s = timeout_s
        self._cafile = cafile

    def _tls(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self._cafile) if self._cafile else None)

    def send(self, page: Page, address: str | None) -> None:
        if not address or "@" not in address:
            raise DeliveryError(f"no e-mail address for {page.recipient_username}", transient=False)
        mail = message(page, sender=self.sender, to=address)
        try:
            smtp: smtplib.SMTP
            if self._implicit_tls:
                smtp = smtplib.SMTP_SSL(self.host, self.port, timeout=self._timeout_s, context=self._tls())
            else:
                smtp = smtplib.SMTP(self.host, self.port, timeout=self._timeout_s)
            with smtp:
                if self._starttls:
                    smtp.starttls(context=self._tls())
                if self._username and self._password:
                    smtp.login(self._username, self._password)
                smtp.send_message(mail)
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            raise DeliveryError(f"SMTP refused the recipient: {codes}",
                                transient=all(_smtp_code_transient(c) for c in codes)) from None
        except smtplib.SMTPResponseException as exc:
            raise DeliveryError(f"SMTP {exc.smtp_code}: {exc.smtp_error!r:.200}",
                                transient=_smtp_code_transient(exc.smtp_code)) from None
        except smtplib.SMTPNotSupportedError as exc:
            raise DeliveryError(f"SMTP server does not support it: {exc}", transient=False) from None
        except ssl.SSLCertVerificationError as exc:
            raise DeliveryError(f"SMTP server certificate not trusted: {exc.verify_message}", transient=False) from None
        except (smtplib.SMTPException, OSError) as exc:
            raise DeliveryError(f"SMTP {self.host}:{self.port}: {exc}", transient=True) from None
