"""The signed expert report as a PDF (reportlab): bilingual, Chinese set in the built-in CID font STSong-Light
(Adobe-GB1, PDF 1.7 section 9.7: viewers supply the glyphs, so no font file ships with us).

The PDF prints the signature block (algorithm, key fingerprint, signature, SHA-256 of the signed canonical
JSON) in Courier and repeats the fingerprint in every page footer, so a printout can be matched to the
stored report and checked with `GET /api/consultations/{id}/report/verify`. Output is byte-for-byte
reproducible for the same report (reportlab's invariant mode).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import textwrap
import zoneinfo
from collections.abc import Mapping
from typing import Any
from xml.sax.saxutils import escape

from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.cidfonts import UnicodeCIDFont
from reportlab.pdfgen.canvas import Canvas
from reportlab.platypus import Flowable, Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

from cloud.consult.report import ALGORITHM, FREQUENCIES, ROUTES, canonical_json

CJK_FONT = "STSong-Light"
MONO_FONT = "Courier"
DISPLAY_ZONE = zoneinfo.ZoneInfo("Asia/Shanghai")  # county hospitals read local time

pdfmetrics.registerFont(UnicodeCIDFont(CJK_FONT))

_TITLE = ParagraphStyle("title", fontName=CJK_FONT, fontSize=16, leading=22, spaceAfter=4)
_HEADING = ParagraphStyle("heading", fontName=CJK_FONT, fontSize=11.5, leading=16, spaceBefore=8, spaceAfter=3)
_BODY = ParagraphStyle("body", fontName=CJK_FONT, fontSize=9.5, leading=14, wordWrap="CJK")
_CELL = ParagraphStyle("cell", fontName=CJK_FONT, fontSize=8.5, leading=11.5, wordWrap="CJK")
_MONO = ParagraphStyle("mono", fontName=MONO_FONT, fontSize=8.5, leading=11)


def _p(text: str, style: ParagraphStyle = _BODY) -> Paragraph:
    return Paragraph(escape(text).replace("\n", "<br/>"), style)


def _local_time(text: str) -> str:
    moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(DISPLAY_ZONE)
    return moment.strftime("%Y-%m-%d %H:%M:%S (UTC+8)")


def _table(rows: list[list[Flowable | str]], widths: list[float], *, header: bool = True) -> Table:
    table = Table(rows, colWidths=widths, repeatRows=1 if header else 0)
    style = [
        ("GRID", (0, 0), (-1, -1), 0.4, colors.grey),
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ("FONTNAME", (0, 0), (-1, -1), CJK_FONT),
    ]
    if header:
        style.append(("BACKGROUND", (0, 0), (-1, 0), colors.Color(0.92, 0.92, 0.92)))
    table.setStyle(TableStyle(style))
    return table


def _header_rows(body: Mapping[str, Any], site_name: str | None) -> list[list[Flowable | str]]:
    return [
        [_p("会诊编号 Consultation", _CELL), _p(str(body["consultation_id"]), _CELL)],
        [_p("患者编号 Patient ID", _CELL), _p(str(body["patient_id"]), _CELL)],
        [_p("申请医院 Requesting site", _CELL), _p(site_name or "-", _CELL)],
        [_p("会诊专家 Expert", _CELL), _p(str(body["expert_name"]), _CELL)],
        [_p("签署时间 Signed at", _CELL), _p(_local_time(str(body["signed_at"])), _CELL)],
    ]


def _diagnosis_rows(body: Mapping[str, Any]) -> list[list[Flowable | str]]:
    rows: list[list[Flowable | str]] = [[_p(h, _CELL) for h in ("ICD-10", "诊断", "Diagnosis", "主要 Primary")]]
    for d in body["diagnoses"]:
        rows.append([_p(d["code"], _CELL), _p(d["name_zh"], _CELL), _p(d["name_en"], _CELL),
                     _p("是 Yes" if d["primary"] else "", _CELL)])
    return rows


def _prescription_rows(body: Mapping[str, Any]) -> list[list[Flowable | str]]:
    header = ("药品 Drug", "剂量 Dose", "途径 Route", "频次 Frequency", "天数 Days", "备注 Notes")
    rows: list[list[Flowable | str]] = [[_p(h, _CELL) for h in header]]
    for line in body["prescriptions"]:
        route_zh, route_en = ROUTES[line["route"]]
        _, freq_zh, freq_en = FREQUENCIES[line["frequency"]]
        rows.append([
            _p(line["drug"], _CELL), _p(f"{line['dose']} {line['unit']}", _CELL),
            _p(f"{route_zh} {line['route']} ({route_en})", _CELL),
            _p(f"{freq_zh} {line['frequency']} ({freq_en})", _CELL),
            _p(str(line["duration_days"]), _CELL), _p(line.get("notes") or "", _CELL),
        ])
    return rows


def _signature_block(body: Mapping[str, Any], signature: str, fingerprint: str) -> list[Flowable]:
    digest = hashlib.sha256(canonical_json(body)).hexdigest()
    wrapped = "\n".join(textwrap.wrap(signature, 64))
    return [
        _p("电子签名 Electronic signature", _HEADING),
        _p(f"Algorithm: {ALGORITHM}", _MONO),
        _p(f"Key fingerprint: {fingerprint}", _MONO),
        _p(f"Signed content SHA-256: {digest}", _MONO),
        _p(f"Signature:\n{wrapped}", _MONO),
        Spacer(1, 3 * mm),
        _p("本报告由会诊专家以其个人密钥签名；任何改动都会使签名验证失败。"
           " This report is signed with the expert's personal key; any change makes verification fail."),
    ]


def render_report_pdf(
    body: Mapping[str, Any], *, signature: str, fingerprint: str, site_name: str | None = None,
) -> bytes:
    """The PDF of a signed report `body` (as stored) with its signature and key fingerprint."""
    buffer = io.BytesIO()
    document = SimpleDocTemplate(
        buffer, pagesize=A4, leftMargin=18 * mm, rightMargin=18 * mm, topMargin=16 * mm, bottomMargin=18 * mm,
        title=f"Consultation report {body['consultation_id']}", author=str(body["expert_name"]),
        subject=f"Ed25519 key {fingerprint}", creator="telemed", invariant=True,
    )
    width = document.width
    story: list[Flowable] = [
        _p("远程会诊专家报告 Tele-consultation expert report", _TITLE),
        _table(_header_rows(body, site_name), [width * 0.3, width * 0.7], header=False),
        _p("检查所见 Findings", _HEADING), _p(str(body["findings"])),
        _p("诊断 Diagnoses (ICD-10)", _HEADING),
        _table(_diagnosis_rows(body), [width * 0.12, width * 0.34, width * 0.4, width * 0.14]),
        _p("建议 Recommendations", _HEADING), _p(str(body["recommendations"]) or "-"),
    ]
    if body["prescriptions"]:
        story += [
            _p("电子处方 E-prescription", _HEADING),
            _table(_prescription_rows(body), [width * w for w in (0.22, 0.12, 0.19, 0.22, 0.11, 0.14)]),
        ]
    follow_up = body.get("follow_up_date")
    story += [_p("随访日期 Follow-up", _HEADING), _p(str(follow_up) if follow_up else "-")]
    story += _signature_block(body, signature, fingerprint)

    def footer(canvas: Canvas, doc: SimpleDocTemplate) -> None:
        canvas.saveState()
        canvas.setFont(MONO_FONT, 7.5)
        canvas.drawString(doc.leftMargin, 10 * mm, f"{ALGORITHM} key {fingerprint}")
        canvas.drawRightString(doc.leftMargin + doc.width, 10 * mm, f"page {doc.page}")
        canvas.restoreState()

    document.build(story, onFirstPage=footer, onLaterPages=footer)
    return buffer.getvalue()
