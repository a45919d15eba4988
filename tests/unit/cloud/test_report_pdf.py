"""The report PDF: renders Chinese with the CID font and carries the signature fingerprint."""

from __future__ import annotations

import base64
import datetime as dt
import re
import shutil
import subprocess
import uuid
import zlib
from pathlib import Path

from cloud.consult import pdf, report
from proto import keys

TODAY = dt.date(2026, 5, 4)


def signed_report() -> report.Signed:
    content = report.ReportInput(
        findings="胸痛2小时，心电图示 ST 段压低。\nTroponin raised.",
        diagnoses=[report.DiagnosisInput("I21.4")],
        recommendations="转上级医院行冠脉造影。",
        prescriptions=[report.PrescriptionInput("阿司匹林 Aspirin", "100", "mg", "PO", "QD", 30)],
        follow_up_date=TODAY + dt.timedelta(days=7),
    )
    body = report.build_body(content, consultation_id=uuid.UUID(int=7), patient_id="P-A1",
                             expert_id=uuid.UUID(int=9), expert_name="王主任",
                             signed_at=dt.datetime(2026, 5, 4, 1, 0, tzinfo=dt.UTC), today=TODAY)
    return report.sign(body, keys.generate())


def page_streams(data: bytes) -> bytes:
    """The decoded content streams of a PDF (reportlab writes them ASCII85 over Flate)."""
    out = []
    for match in re.finditer(rb"stream\r?\n(.*?)\r?\n?endstream", data, re.S):
        raw = match.group(1).strip()
        if raw.endswith(b"~>"):
            raw = base64.a85decode(raw[:-2])
        try:
            out.append(zlib.decompress(raw))
        except zlib.error:
            out.append(raw)
    return b"\n".join(out)


def test_the_pdf_carries_the_fingerprint_and_signature(tmp_path: Path) -> None:
    signed = signed_report()
    data = pdf.render_report_pdf(signed.body, signature=signed.signature, fingerprint=signed.key_fingerprint,
                                 site_name="甲县医院")

    assert data.startswith(b"%PDF-")
    streams = page_streams(data)
    # Courier text is drawn as plain PDF strings in the content stream.
    assert f"Key fingerprint: {signed.key_fingerprint}".encode() in streams
    assert f"Ed25519 key {signed.key_fingerprint}".encode() in streams  # the footer of every page
    assert b"STSong-Light" in data  # the CID font for Chinese, referenced, not embedded
    pdftotext = shutil.which("pdftotext")
    if pdftotext is not None:  # poppler-utils: check what a reader extracts too
        path = tmp_path / "report.pdf"
        path.write_bytes(data)
        text = subprocess.run([pdftotext, str(path), "-"], capture_output=True, text=True, check=True).stdout
        assert f"Key fingerprint: {signed.key_fingerprint}" in text
        assert signed.signature[:64] in text
        assert "I21.4" in text and "Acute subendocardial myocardial infarction" in text


def test_the_pdf_is_reproducible_and_differs_per_report() -> None:
    signed = signed_report()
    first = pdf.render_report_pdf(signed.body, signature=signed.signature, fingerprint=signed.key_fingerprint)
    again = pdf.render_report_pdf(signed.body, signature=signed.signature, fingerprint=signed.key_fingerprint)
    assert first == again
    other = report.sign({**signed.body, "findings": "changed"}, keys.generate())
    assert pdf.render_report_pdf(other.body, signature=other.signature, fingerprint=other.key_fingerprint) != first
