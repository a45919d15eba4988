"""The edge's local HTTP endpoint (stdlib asyncio streams, on the service's event loop).

    GET /            status page (HTML, zh-CN or en: ?lang=, else Accept-Language, else [http] language)
    GET /healthz     JSON; 200 when healthy, 503 when not (uplink down past its grace, a component failed)
    GET /metrics     Prometheus text exposition format 0.0.4 (edge/metrics.py)
    GET /api/status  the status page's data as JSON

HTTP/1.1 with one request per connection (`Connection: close`): the clients are a browser on the ward's
network, a Prometheus scraper and a health probe, none of which needs keep-alive. Everything the page shows
is escaped; it loads nothing from elsewhere (Content-Security-Policy default-src 'none').
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import html
import json
import logging
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal, Protocol

from edge.alerting.local import EdgeNotice
from edge.alerting.state import OpenAlert
from edge.collector.collector import DeviceView
from proto.schema import to_wire

log = logging.getLogger(__name__)

Language = Literal["zh-CN", "en"]
_MAX_HEAD: Final = 16 * 1024
_READ_TIMEOUT_S: Final = 10.0
_REFRESH_S: Final = 5
_REASONS: Final = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
                   500: "Internal Server Error", 503: "Service Unavailable"}


class HttpServerError(Exception):
    """The status endpoint could not start (address in use, permission)."""


# --- what the page shows (built by the service) ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Health:
    healthy: bool
    uplink: str
    uplink_down_s: float | None
    outbox_depth: dict[str, int]
    devices_connected: int
    devices_supervised: int
    problems: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class LaneView:
    lane: str
    depth: int
    bytes: int
    oldest_age_s: float | None


@dataclass(frozen=True, slots=True)
class StudyView:
    study_instance_uid: str
    patient_id: str  # pseudonymous
    study_date: str
    modalities: tuple[str, ...]
    series: int
    instances: int
    received_at: dt.datetime
    state: str  # receiving, complete, uploaded


@dataclass(frozen=True, slots=True)
class StatusSnapshot:
    edge_id: str
    site: str
    name: str
    now: dt.datetime
    uptime_s: float
    health: Health
    lanes: tuple[LaneView, ...] = ()
    devices: tuple[DeviceView, ...] = ()
    alerts: tuple[OpenAlert, ...] = ()
    notices: tuple[EdgeNotice, ...] = ()
    studies: tuple[StudyView, ...] = ()
    timezone: dt.tzinfo = field(default=dt.UTC)
    simulated: bool = False
    software_version: str | None = None


class StatusSource(Protocol):
    """What the server asks the service for (on the event loop)."""

    def health(self) -> Health: ...

    def snapshot(self) -> StatusSnapshot: ...

    def metrics_text(self) -> str: ...


# --- the server --------------------------------------------------------------------------------------------


class HttpServer:
    """start() binds host:port (port 0: any free port, see `port`), stop() closes it."""

    def __init__(self, source: StatusSource, *, host: str, port: int, language: Language = "zh-CN") -> None:
        self._source = source
        self.host = host
        self._port = port
        self.language = language
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        if self._server is not None and self._server.sockets:
            return int(self._server.sockets[0].getsockname()[1])
        return self._port

    async def start(self) -> None:
        try:
            self._server = await asyncio.start_server(self._serve, self.host, self._port, limit=_MAX_HEAD)
        except OSError as exc:
            raise HttpServerError(f"cannot listen on {self.host}:{self._port}: {exc.strerror}") from exc
        log.info("http.listening", extra={"host": self.host, "port": self.port})

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), _READ_TIMEOUT_S)
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ConnectionError):
                return
            status, headers, body = self.respond(head)
            writer.write(_response(status, headers, body))
            await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, TimeoutError):
                await asyncio.wait_for(writer.wait_closed(), 2.0)

    def respond(self, head: bytes) -> tuple[int, dict[str, str], bytes]:
        """The response to a request head (public so routing is testable without sockets)."""
        try:
            request_line, *header_lines = head.decode("latin-1").split("\r\n")
            method, target, version = request_line.split(" ")
            if not version.startswith("HTTP/1."):
                raise ValueError(version)
        except ValueError:
            return 400, _text_type(), b"bad request\n"
        headers = {}
        for line in header_lines:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        url = urllib.parse.urlsplit(target)
        if method not in ("GET", "HEAD"):
            return 405, _text_type() | {"Allow": "GET, HEAD"}, b"method not allowed\n"
        try:
            status, out_headers, body = self._route(url.path, urllib.parse.parse_qs(url.query), headers)
        except Exception:
            log.exception("http.handler_failed", extra={"path": url.path})
            return 500, _text_type(), b"internal error\n"
        return status, out_headers, b"" if method == "HEAD" else body

    def _route(self, path: str, query: dict[str, list[str]], headers: dict[str, str]
               ) -> tuple[int, dict[str, str], bytes]:
        if path == "/healthz":
            health = self._source.health()
            return (200 if health.healthy else 503), _json_type(), _json(health_document(health))
        if path == "/metrics":
            return 200, {"Content-Type": "text/plain; version=0.0.4; charset=utf-8"}, \
                self._source.metrics_text().encode()
        if path == "/api/status":
            return 200, _json_type(), _json(status_document(self._source.snapshot()))
        if path in ("/", "/index.html"):
            language = choose_language(query.get("lang", [""])[0], headers.get("accept-language", ""),
                                       self.language)
            page = render_status_page(self._source.snapshot(), language)
            return 200, {"Content-Type": "text/html; charset=utf-8", "X-Content-Type-Options": "nosniff",
                         "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'"}, page.encode()
        return 404, _text_type(), b"not found\n"


def _text_type() -> dict[str, str]:
    return {"Content-Type": "text/plain; charset=utf-8"}


def _json_type() -> dict[str, str]:
    return {"Content-Type": "application/json"}


def _json(document: Any) -> bytes:
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()


def _response(status: int, headers: dict[str, str], body: bytes) -> bytes:
    lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    lines += [f"Content-Length: {len(body)}", "Cache-Control: no-store", "Connection: close", "", ""]
    return "\r\n".join(lines).encode("latin-1") + body


# --- documents ------------------------------------------------------------------------------------------------


def health_document(health: Health) -> dict[str, Any]:
    return {"status": "ok" if health.healthy else "unhealthy", "uplink": health.uplink,
            "uplink_down_s": None if health.uplink_down_s is None else round(health.uplink_down_s, 1),
            "outbox": health.outbox_depth, "devices_connected": health.devices_connected,
            "devices_supervised": health.devices_supervised, "problems": list(health.problems)}


def status_document(s: StatusSnapshot) -> dict[str, Any]:
    return {
        "edge": {"id": s.edge_id, "site": s.site, "name": s.name, "version": s.software_version,
                 "simulated": s.simulated},
        "now": s.now.isoformat(), "uptime_s": round(s.uptime_s, 1), "health": health_document(s.health),
        "outbox": [{"lane": ln.lane, "depth": ln.depth, "bytes": ln.bytes, "oldest_age_s": ln.oldest_age_s}
                   for ln in s.lanes],
        "devices": [{"device_id": d.device_id, "address": d.address, "device_type": d.device_type,
                     "patient_id": d.patient_id, "state": d.state, "battery_pct": d.battery_pct,
                     "rssi_dbm": d.rssi_dbm, "last_seen": None if d.last_seen is None else d.last_seen.isoformat(),
                     "samples": d.samples, "decode_errors": d.decode_errors} for d in s.devices],
        "alerts": [{"alert": to_wire(a.alert), "notified_locally": a.notified_locally} for a in s.alerts],
        "notices": [{"at": n.at.isoformat(), "message": n.message} for n in s.notices],
        "studies": [{"study_instance_uid": st.study_instance_uid, "patient_id": st.patient_id,
                     "study_date": st.study_date, "modalities": list(st.modalities), "series": st.series,
                     "instances": st.instances, "received_at": st.received_at.isoformat(), "state": st.state}
                    for st in s.studies],
    }


def choose_language(query: str, accept_language: str, default: Language) -> Language:
    """?lang= first, then the first zh/en tag of Accept-Language (RFC 9110 12.5.4; weights ignored)."""
    for tag in [query, *(part.split(";")[0].strip() for part in accept_language.split(","))]:
        lowered = tag.lower()
        if lowered.startswith("zh"):
            return "zh-CN"
        if lowered.startswith("en"):
            return "en"
    return default


# --- the page -----------------------------------------------------------------------------------------------

_TEXT: Final[dict[str, dict[Language, str]]] = {
    "title": {"zh-CN": "边缘节点状态", "en": "Edge node status"},
    "uplink": {"zh-CN": "上行链路", "en": "Uplink"},
    "connected": {"zh-CN": "已连接", "en": "connected"},
    "connecting": {"zh-CN": "连接中", "en": "connecting"},
    "disconnected": {"zh-CN": "离线", "en": "offline"},
    "stopped": {"zh-CN": "已停止", "en": "stopped"},
    "healthy": {"zh-CN": "正常", "en": "healthy"},
    "unhealthy": {"zh-CN": "异常", "en": "unhealthy"},
    "offline_note": {"zh-CN": "云端不可达：报警由本机处理并已排队，恢复连接后优先发送。",
                     "en": "Cloud unreachable: alarms are handled locally and queued; they go first on reconnect."},
    "alerts": {"zh-CN": "活动报警", "en": "Active alarms"},
    "no_alerts": {"zh-CN": "无活动报警", "en": "No active alarms"},
    "priority": {"zh-CN": "级别", "en": "Priority"},
    "patient": {"zh-CN": "患者", "en": "Patient"},
    "rule": {"zh-CN": "规则", "en": "Rule"},
    "message": {"zh-CN": "说明", "en": "Message"},
    "since": {"zh-CN": "时间", "en": "Since"},
    "local": {"zh-CN": "本地通知", "en": "Local notice"},
    "high": {"zh-CN": "高", "en": "high"},
    "medium": {"zh-CN": "中", "en": "medium"},
    "low": {"zh-CN": "低", "en": "low"},
    "clinical": {"zh-CN": "临床", "en": "clinical"},
    "technical": {"zh-CN": "技术", "en": "technical"},
    "advisory": {"zh-CN": "提示", "en": "advisory"},
    "notices": {"zh-CN": "节点告警", "en": "Edge notices"},
    "outbox": {"zh-CN": "待发送队列", "en": "Outbox"},
    "lane": {"zh-CN": "通道", "en": "Lane"},
    "depth": {"zh-CN": "消息数", "en": "Messages"},
    "bytes": {"zh-CN": "字节", "en": "Bytes"},
    "oldest": {"zh-CN": "最早 (秒)", "en": "Oldest (s)"},
    "devices": {"zh-CN": "设备", "en": "Devices"},
    "no_devices": {"zh-CN": "无设备", "en": "No devices"},
    "device": {"zh-CN": "设备", "en": "Device"},
    "type": {"zh-CN": "类型", "en": "Type"},
    "state": {"zh-CN": "状态", "en": "State"},
    "battery": {"zh-CN": "电量", "en": "Battery"},
    "last_seen": {"zh-CN": "最后数据", "en": "Last seen"},
    "signal": {"zh-CN": "信号", "en": "RSSI"},
    "studies": {"zh-CN": "最近影像检查", "en": "Recent studies"},
    "no_studies": {"zh-CN": "无影像检查", "en": "No studies"},
    "study_date": {"zh-CN": "检查日期", "en": "Study date"},
    "modality": {"zh-CN": "模态", "en": "Modality"},
    "series": {"zh-CN": "序列/图像", "en": "Series/images"},
    "received": {"zh-CN": "接收时间", "en": "Received"},
    "simulated": {"zh-CN": "模拟病房", "en": "simulated ward"},
    "yes": {"zh-CN": "是", "en": "yes"},
    "no": {"zh-CN": "否", "en": "no"},
    "alerts_lane": {"zh-CN": "报警", "en": "alerts"},
    "events_lane": {"zh-CN": "事件", "en": "events"},
    "vitals_lane": {"zh-CN": "生命体征", "en": "vitals"},
    "bulk_lane": {"zh-CN": "影像清单", "en": "bulk"},
    "backing_off": {"zh-CN": "重连中", "en": "reconnecting"},
    "lost": {"zh-CN": "已丢失", "en": "lost"},
    "receiving": {"zh-CN": "接收中", "en": "receiving"},
    "complete": {"zh-CN": "已完成", "en": "complete"},
    "uploaded": {"zh-CN": "已上传", "en": "uploaded"},
}

_DEVICE_TYPES: Final[dict[str, dict[Language, str]]] = {
    "heart_rate_monitor": {"zh-CN": "心率带", "en": "Heart-rate strap"},
    "pulse_oximeter": {"zh-CN": "血氧仪", "en": "Pulse oximeter"},
    "blood_pressure_monitor": {"zh-CN": "血压计", "en": "Blood pressure cuff"},
    "thermometer": {"zh-CN": "体温计", "en": "Thermometer"},
    "glucose_meter": {"zh-CN": "血糖仪", "en": "Glucose meter"},
    "weight_scale": {"zh-CN": "体重秤", "en": "Weight scale"},
    "chest_patch": {"zh-CN": "呼吸贴", "en": "Respiration patch"},
}

_STYLE: Final = """
body{font-family:system-ui,"PingFang SC","Microsoft YaHei",sans-serif;margin:1.5rem;color:#1d2329}
h1{font-size:1.4rem;margin:0 0 .3rem}h2{font-size:1.1rem;margin:1.4rem 0 .4rem}
table{border-collapse:collapse;width:100%;font-size:.9rem}th,td{border-bottom:1px solid #dde2e6;
padding:.3rem .5rem;text-align:left}th{background:#f3f5f7}.ok{color:#13795b}.bad{color:#b42318;font-weight:600}
.p-high{background:#fde2e1}.p-medium{background:#fff1d6}.p-low{background:#eef4ff}.muted{color:#667085}
.banner{background:#fde2e1;border:1px solid #b42318;padding:.5rem .8rem;margin:.6rem 0}nav a{margin-right:.8rem}
"""


def _t(key: str, language: Language) -> str:
    entry = _TEXT.get(key)
    return entry[language] if entry is not None else key


def _e(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _local(when: dt.datetime | None, zone: dt.tzinfo) -> str:
    return "-" if when is None else when.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S")


def _table(headers: Sequence[str], rows: Sequence[tuple[str, Sequence[str]]], empty: str) -> str:
    if not rows:
        return f'<p class="muted">{_e(empty)}</p>'
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join(f'<tr class="{css}">' + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>"
                   for css, cells in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render_status_page(s: StatusSnapshot, language: Language) -> str:
    """The whole page: self-contained HTML (inline CSS, no script), every value escaped."""
    def t(key: str) -> str:
        return _t(key, language)

    zone = s.timezone
    uplink_ok = s.health.uplink == "connected"
    parts = [
        f'<!DOCTYPE html><html lang="{language}"><head><meta charset="utf-8">',
        f'<meta http-equiv="refresh" content="{_REFRESH_S}"><meta name="viewport" content="width=device-width">',
        f"<title>{_e(t('title'))} · {_e(s.name or s.edge_id)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{_e(t('title'))}: {_e(s.name or s.edge_id)}</h1>",
        f'<p class="muted">{_e(s.site)} / {_e(s.edge_id)} · {_e(_local(s.now, zone))}'
        + (f" · {_e(t('simulated'))}" if s.simulated else "") + "</p>",
        '<nav><a href="?lang=zh-CN">中文</a><a href="?lang=en">English</a>'
        '<a href="/healthz">/healthz</a><a href="/metrics">/metrics</a></nav>',
        f"<p>{_e(t('uplink'))}: <span class=\"{'ok' if uplink_ok else 'bad'}\">{_e(t(s.health.uplink))}</span>"
        f" · <span class=\"{'ok' if s.health.healthy else 'bad'}\">"
        f"{_e(t('healthy' if s.health.healthy else 'unhealthy'))}</span></p>",
    ]
    if not uplink_ok:
        parts.append(f'<div class="banner">{_e(t("offline_note"))}</div>')
    alert_rows = [
        (f"p-{a.alert.priority}", (
            _e(f"{t(a.alert.priority)} / {t(a.alert.category)}"), _e(a.alert.patient_id), _e(a.alert.rule),
            _e(a.alert.message), _e(_local(a.alert.raised_at, zone)), _e(t("yes" if a.notified_locally else "no"))))
        for a in s.alerts
    ]
    parts += [f"<h2>{_e(t('alerts'))} ({len(s.alerts)})</h2>",
              _table([t("priority"), t("patient"), t("rule"), t("message"), t("since"), t("local")], alert_rows,
                     t("no_alerts"))]
    if s.notices:
        parts += [f"<h2>{_e(t('notices'))}</h2>",
                  _table([t("since"), t("message")],
                         [("p-medium", (_e(_local(n.at, zone)), _e(n.message))) for n in s.notices], "")]
    lane_rows = [("", (_e(t(f"{ln.lane}_lane")), _e(ln.depth), _e(ln.bytes),
                       _e("-" if ln.oldest_age_s is None else f"{ln.oldest_age_s:.0f}"))) for ln in s.lanes]
    parts += [f"<h2>{_e(t('outbox'))}</h2>", _table([t("lane"), t("depth"), t("bytes"), t("oldest")], lane_rows, "")]
    device_rows = [
        ("" if d.state == "connected" else "p-low", (
            _e(d.patient_id or "-"), _e(_DEVICE_TYPES.get(d.device_type, {}).get(language, d.device_type)),
            _e(d.device_id), _e(t(d.state)), _e("-" if d.battery_pct is None else f"{d.battery_pct:.0f}%"),
            _e("-" if d.rssi_dbm is None else f"{d.rssi_dbm} dBm"), _e(_local(d.last_seen, zone))))
        for d in s.devices
    ]
    parts += [f"<h2>{_e(t('devices'))} ({s.health.devices_connected}/{len(s.devices)})</h2>",
              _table([t("patient"), t("type"), t("device"), t("state"), t("battery"), t("signal"), t("last_seen")],
                     device_rows, t("no_devices"))]
    study_rows = [("", (_e(st.patient_id), _e(st.study_date or "-"), _e("/".join(st.modalities) or "-"),
                        _e(f"{st.series}/{st.instances}"), _e(_local(st.received_at, zone)), _e(t(st.state))))
                  for st in s.studies]
    parts += [f"<h2>{_e(t('studies'))}</h2>",
              _table([t("patient"), t("study_date"), t("modality"), t("series"), t("received"), t("state")],
                     study_rows, t("no_studies")),
              f'<p class="muted">telemed {_e(s.software_version or "")} · uptime {s.uptime_s:.0f} s</p>',
              "</body></html>"]
    return "".join(parts)
