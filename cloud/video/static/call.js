// telemed call panel: a consultation's video call with the county edge (served at /video/call.js).
//
//   import { mountCallPanel } from "/video/call.js";
//   const panel = mountCallPanel(document.querySelector("#call"), { consultationId, token, lang: "zh-CN" });
//   panel.connection.addEventListener("state", (e) => console.log(e.detail));
//
// Signalling: WS /api/consultations/{id}/call, token as the subprotocol "bearer.<token>" (or the session
// cookie from the same origin when no token is given). Media goes peer to peer with the edge (or via TURN).
// The offer always has the same three m-lines, which the edge relies on (edge/video/session.py):
//   0 audio sendrecv  (my microphone / the other participant),
//   1 video sendrecv  (my camera / the clinical source: camera, ultrasound, ...),
//   2 video recvonly  (the other participant's camera).
// aiortc (the edge) has no ICE restart: when the network drops, the connection is rebuilt and negotiated
// again (a new offer, n + 1) on the same signalling socket, or a new socket if that dropped too.
//
// Recording is off unless the patient consented: the county doctor (role "requester") records consent
// (POST /api/consultations/{id}/recording-consent), either side may revoke it; the edge records only
// while consent stands and says so with a "recording" signal, shown to both sides as a red indicator.

const SUBPROTOCOL = "telemed.call.v1";
const ANSWER_TIMEOUT_MS = 15000;
const DISCONNECTED_GRACE_MS = 4000;
const RETRY_MIN_MS = 1000;
const RETRY_MAX_MS = 15000;
const STATS_INTERVAL_MS = 2000;
const FINAL_CLOSE_CODES = new Set([4401, 4403, 4409, 1008]);

const TEXT = {
  "zh-CN": {
    join: "加入视频", leave: "离开", mute: "静音", unmute: "取消静音", cameraOff: "关闭摄像头",
    cameraOn: "打开摄像头", source: "画面来源", camera: "床旁摄像头", ultrasound: "超声", synthetic: "测试图像",
    idle: "未连接", connecting: "正在连接…", connected: "已连接", reconnecting: "网络中断，正在重新连接…",
    closed: "通话已结束", refused: "无法加入", replaced: "已在其他窗口或设备加入",
    quality: "画质", loss: "丢包", noMedia: "未获取到麦克风/摄像头",
    recording: "正在录制", notRecording: "未录制", consent: "录制同意", consentNone: "患者未同意录制",
    consentStanding: "患者已同意录制", recordConsent: "记录患者同意录制", recordGuardianConsent: "记录监护人同意录制",
    revokeConsent: "撤回录制同意", consentConfirm: "请确认患者（或监护人）已明确同意本次会诊视频录制。",
    recordings: "会诊录像", download: "下载", recordingUnavailable: "此边缘节点无法录制",
    consentFailed: "操作失败",
  },
  en: {
    join: "Join video", leave: "Leave", mute: "Mute", unmute: "Unmute", cameraOff: "Camera off",
    cameraOn: "Camera on", source: "Source", camera: "Bedside camera", ultrasound: "Ultrasound",
    synthetic: "Test pattern", idle: "Not connected", connecting: "Connecting…", connected: "Connected",
    reconnecting: "Network lost, reconnecting…", closed: "Call ended", refused: "Cannot join",
    replaced: "Joined from another window or device",
    quality: "Quality", loss: "loss", noMedia: "No microphone/camera available",
    recording: "Recording", notRecording: "Not recording", consent: "Recording consent",
    consentNone: "The patient has not consented to recording", consentStanding: "The patient consented to recording",
    recordConsent: "Record patient's consent", recordGuardianConsent: "Record guardian's consent",
    revokeConsent: "Revoke recording consent",
    consentConfirm: "Confirm that the patient (or guardian) explicitly agreed to this consultation's video being recorded.",
    recordings: "Recordings", download: "Download", recordingUnavailable: "This edge cannot record",
    consentFailed: "Failed",
  },
};

function apiUrl(base, consultationId, tail) {
  return new URL(`/api/consultations/${encodeURIComponent(consultationId)}/${tail}`, base).toString();
}

function callUrl(base, consultationId) {
  const url = new URL(`/api/consultations/${encodeURIComponent(consultationId)}/call`, base);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  return url.toString();
}

/** The call's signalling and peer connection, without UI. Emits "state", "message", "quality", "tracks". */
export class CallConnection extends EventTarget {
  constructor({ consultationId, token = null, base = window.location.href, source = null } = {}) {
    super();
    this.consultationId = consultationId;
    this.token = token;
    this.base = base;
    this.wantedSource = source;
    this.state = "idle";
    this.ws = null;
    this.pc = null;
    this.n = -1;
    this.role = null;
    this.iceServers = [];
    this.sources = [];
    this.source = null;
    this.edgeQuality = null;
    this.localStream = null;
    this.remote = { source: new MediaStream(), peer: new MediaStream(), audio: new MediaStream() };
    this._leaving = false;
    this._retryMs = RETRY_MIN_MS;
    this._answerTimer = null;
    this._graceTimer = null;
    this._statsTimer = null;
    this._lastInbound = null;
    this.consent = null; // does the patient's consent to record stand (null: not known yet)
    this.recording = false; // is the edge recording this call now
  }

  _setRecording(changes) {
    Object.assign(this, changes);
    this.dispatchEvent(new CustomEvent("recording", { detail: { consent: this.consent, recording: this.recording } }));
  }

  async _api(tail, { method = "GET", body } = {}) {
    const headers = { Accept: "application/json" };
    if (this.token) headers.Authorization = `Bearer ${this.token}`;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const res = await fetch(apiUrl(this.base, this.consultationId, tail), {
      method, headers, credentials: "same-origin", body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (!res.ok) {
      let detail = res.statusText;
      try { detail = (await res.json()).detail ?? detail; } catch { /* not JSON */ }
      throw new Error(`${res.status}: ${typeof detail === "string" ? detail : JSON.stringify(detail)}`);
    }
    return res;
  }

  /** Read whether the patient's consent to record stands. */
  async loadConsent() {
    const state = await (await this._api("recording-consent")).json();
    if (this.role === null && state.role) this.role = state.role; // known before joining, for the controls
    this._setRecording({ consent: state.standing });
    return state;
  }

  /** Record the patient's (or guardian's) consent: the county doctor only; the edge starts recording. */
  async recordConsent({ givenBy = "patient", note = "" } = {}) {
    const state = await (await this._api("recording-consent", { method: "POST", body: { given_by: givenBy, note } })).json();
    this._setRecording({ consent: state.standing });
    return state;
  }

  /** Revoke consent (either side); the edge stops recording at once. */
  async revokeConsent() {
    const state = await (await this._api("recording-consent/revoke", { method: "POST" })).json();
    this._setRecording({ consent: state.standing });
    return state;
  }

  /** The consultation's stored recordings. */
  async listRecordings() {
    return (await (await this._api("recordings")).json()).recordings;
  }

  /** One recording's media as a Blob (decrypted by the cloud for participants). */
  async fetchRecording(recordingId) {
    return (await this._api(`recordings/${encodeURIComponent(recordingId)}`)).blob();
  }

  _setState(state, detail = {}) {
    this.state = state;
    this.dispatchEvent(new CustomEvent("state", { detail: { state, ...detail } }));
  }

  async join() {
    this._leaving = false;
    this._joined = false;
    await this._ensureLocalMedia();
    this._openSocket();
  }

  async _ensureLocalMedia() {
    if (this.localStream) return;
    try {
      this.localStream = await navigator.mediaDevices.getUserMedia({ audio: true, video: { width: 640, height: 480 } });
    } catch (err) {
      try {
        this.localStream = await navigator.mediaDevices.getUserMedia({ audio: true });
      } catch (err2) {
        this.localStream = new MediaStream(); // receive only
        this.dispatchEvent(new CustomEvent("message", { detail: { type: "no_media", detail: String(err2) } }));
      }
    }
  }

  _openSocket() {
    this._setState(this._joined ? "reconnecting" : "connecting");
    this._joined = true;
    const protocols = [SUBPROTOCOL];
    if (this.token) protocols.push(`bearer.${this.token}`);
    const ws = new WebSocket(callUrl(this.base, this.consultationId), protocols);
    this.ws = ws;
    ws.onmessage = (event) => this._onSignal(JSON.parse(event.data));
    ws.onclose = (event) => {
      if (this.ws !== ws) return;
      this.ws = null;
      if (this._leaving) return;
      if (FINAL_CLOSE_CODES.has(event.code)) {
        this._teardownPeer();
        this._setState("refused", { code: event.code, reason: event.reason });
        return;
      }
      this._scheduleRetry(() => this._openSocket());
    };
  }

  _send(message) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(message));
  }

  async _onSignal(message) {
    this.dispatchEvent(new CustomEvent("message", { detail: message }));
    switch (message.type) {
      case "welcome":
        // A new socket is a new signalling session: the cloud numbers its negotiations from 0 again.
        this.n = -1;
        this.role = message.role;
        this.iceServers = message.ice_servers || [];
        this._setRecording({ consent: Boolean(message.consent) });
        await this._negotiate();
        break;
      case "answer":
        if (message.n !== this.n || !this.pc) return; // a late answer of an abandoned negotiation
        clearTimeout(this._answerTimer);
        this.sources = message.sources || [];
        this.source = message.source;
        await this.pc.setRemoteDescription({ type: "answer", sdp: message.sdp });
        this._retryMs = RETRY_MIN_MS;
        break;
      case "source":
        this.source = message.source;
        this._setState(this.state);
        break;
      case "quality":
        this.edgeQuality = message;
        break;
      case "recording":
        if (message.n === this.n) this._setRecording({ recording: Boolean(message.active) });
        break;
      case "consent":
        this._setRecording({ consent: Boolean(message.standing), recording: message.standing ? this.recording : false });
        break;
      case "closed":
        if (message.n !== this.n || this._leaving || message.reason === "bye") break;
        if (message.reason === "replaced") {
          // The same user joined from another tab or device: that one has the call now.
          this._teardownPeer();
          this._setState("replaced");
        } else {
          this._scheduleRetry(() => this._negotiate());
        }
        break;
      case "error":
        if (message.n === this.n && message.reason === "viewers_full") {
          this._teardownPeer();
          this._setState("refused", { reason: message.detail });
        }
        break;
      default:
        break;
    }
  }

  async _negotiate() {
    this._teardownPeer();
    const pc = new RTCPeerConnection({ iceServers: this.iceServers, bundlePolicy: "max-bundle" });
    this.pc = pc;
    this.n += 1;
    const n = this.n;
    const audio = this.localStream.getAudioTracks()[0] || null;
    const video = this.localStream.getVideoTracks()[0] || null;
    const tAudio = pc.addTransceiver(audio || "audio", { direction: "sendrecv", streams: [this.localStream] });
    const tSource = pc.addTransceiver(video || "video", { direction: "sendrecv", streams: [this.localStream] });
    const tPeer = pc.addTransceiver("video", { direction: "recvonly" });
    this.remote = {
      audio: new MediaStream([tAudio.receiver.track]),
      source: new MediaStream([tSource.receiver.track]),
      peer: new MediaStream([tPeer.receiver.track]),
    };
    this.dispatchEvent(new CustomEvent("tracks", { detail: this.remote }));
    pc.onicecandidate = (event) => {
      if (this.pc !== pc) return;
      this._send({ type: "candidate", candidate: event.candidate ? event.candidate.toJSON() : null });
    };
    pc.onconnectionstatechange = () => this._onPeerState(pc);
    const offer = await pc.createOffer();
    await pc.setLocalDescription(offer);
    const message = { type: "offer", sdp: pc.localDescription.sdp };
    if (this.source || this.wantedSource) message.source = this.source || this.wantedSource;
    this._send(message);
    this._answerTimer = setTimeout(() => {
      if (this.pc === pc && this.n === n && pc.signalingState !== "stable") this._scheduleRetry(() => this._negotiate());
    }, ANSWER_TIMEOUT_MS);
    this._startStats(pc);
  }

  _onPeerState(pc) {
    if (this.pc !== pc) return;
    const state = pc.connectionState;
    clearTimeout(this._graceTimer);
    if (state === "connected") {
      this._retryMs = RETRY_MIN_MS;
      this._setState("connected");
    } else if (state === "disconnected") {
      // Often transient (a Wi-Fi roam): give ICE a moment before negotiating anew.
      this._graceTimer = setTimeout(() => {
        if (this.pc === pc && pc.connectionState !== "connected") this._scheduleRetry(() => this._negotiate());
      }, DISCONNECTED_GRACE_MS);
    } else if (state === "failed") {
      this._scheduleRetry(() => this._negotiate());
    }
  }

  _scheduleRetry(action) {
    if (this._leaving) return;
    this._setState("reconnecting");
    const delay = this._retryMs;
    this._retryMs = Math.min(this._retryMs * 2, RETRY_MAX_MS);
    setTimeout(() => {
      if (this._leaving) return;
      if (!this.ws) this._openSocket(); // a new socket negotiates after its welcome
      else action();
    }, delay * (0.5 + Math.random() / 2));
  }

  _startStats(pc) {
    clearInterval(this._statsTimer);
    this._lastInbound = null;
    this._statsTimer = setInterval(async () => {
      if (this.pc !== pc) return;
      const report = await pc.getStats();
      let inbound = null;
      report.forEach((s) => {
        if (s.type === "inbound-rtp" && s.kind === "video" && s.mid === "1") inbound = s;
      });
      if (!inbound) return;
      const last = this._lastInbound;
      this._lastInbound = inbound;
      let loss = 0;
      if (last) {
        const received = inbound.packetsReceived - last.packetsReceived;
        const lost = inbound.packetsLost - last.packetsLost;
        loss = received + lost > 0 ? Math.max(0, lost) / (received + lost) : 0;
      }
      const detail = {
        width: inbound.frameWidth || null, height: inbound.frameHeight || null,
        fps: inbound.framesPerSecond || 0, loss, jitterMs: (inbound.jitter || 0) * 1000,
        rung: this.edgeQuality ? this.edgeQuality.rung : null,
        level: loss > 0.1 || (inbound.framesPerSecond || 0) < 10 ? "poor" : loss > 0.02 ? "fair" : "good",
      };
      this.dispatchEvent(new CustomEvent("quality", { detail }));
    }, STATS_INTERVAL_MS);
  }

  setMuted(muted) {
    this.localStream?.getAudioTracks().forEach((t) => { t.enabled = !muted; });
  }

  setCameraEnabled(enabled) {
    this.localStream?.getVideoTracks().forEach((t) => { t.enabled = enabled; });
  }

  selectSource(source) {
    this.wantedSource = source;
    if (this.n >= 0) this._send({ type: "source", source });
  }

  _teardownPeer() {
    if (this.recording) this._setRecording({ recording: false });
    clearTimeout(this._answerTimer);
    clearTimeout(this._graceTimer);
    clearInterval(this._statsTimer);
    if (this.pc) {
      this.pc.onicecandidate = null;
      this.pc.onconnectionstatechange = null;
      this.pc.close();
      this.pc = null;
    }
  }

  leave() {
    this._leaving = true;
    this._send({ type: "bye" });
    this._teardownPeer();
    if (this.ws) this.ws.close(1000, "bye");
    this.ws = null;
    this.localStream?.getTracks().forEach((t) => t.stop());
    this.localStream = null;
    this._setState("closed");
  }
}

function el(tag, attrs = {}, children = []) {
  const node = document.createElement(tag);
  Object.entries(attrs).forEach(([k, v]) => {
    if (k === "class") node.className = v;
    else if (k.startsWith("data-")) node.setAttribute(k, v);
    else node[k] = v;
  });
  children.forEach((c) => node.append(c));
  return node;
}

const STYLE_ID = "telemed-call-style";

function ensureStyle() {
  if (typeof document === "undefined" || document.getElementById(STYLE_ID)) return;
  // A stylesheet beside this module rather than an inline <style>, which a strict CSP refuses.
  document.head.append(el("link", { id: STYLE_ID, rel: "stylesheet", href: new URL("call.css", import.meta.url).href }));
}

function recordingLabel(r, lang) {
  const when = new Date(r.started_at).toLocaleString(lang);
  const minutes = Math.floor(r.seconds / 60);
  const seconds = String(r.seconds % 60).padStart(2, "0");
  return `${when} · ${minutes}:${seconds} · ${(r.bytes / 1048576).toFixed(1)} MB`;
}

/** The consent control (record: the county doctor; revoke: both), the recording indicator, the recordings. */
function mountConsent(connection, t, lang) {
  const indicator = el("span", { class: "call-recording", "data-role": "recording", "data-active": "false" },
    [t.notRecording]);
  const consentState = el("span", { "data-role": "consent-state" }, [t.consentNone]);
  const grant = el("button", { type: "button", "data-role": "consent-grant" }, [t.recordConsent]);
  const grantGuardian = el("button", { type: "button", "data-role": "consent-grant-guardian" }, [t.recordGuardianConsent]);
  const revoke = el("button", { type: "button", "data-role": "consent-revoke", hidden: true }, [t.revokeConsent]);
  const error = el("span", { class: "call-consent-error", "data-role": "consent-error" });
  const list = el("ul", { class: "call-recordings", "data-role": "recordings" });
  const render = () => {
    indicator.dataset.active = String(connection.recording);
    indicator.textContent = connection.recording ? t.recording : t.notRecording;
    consentState.textContent = connection.consent ? t.consentStanding : t.consentNone;
    consentState.dataset.standing = String(Boolean(connection.consent));
    const mayGrant = connection.role !== "expert"; // the server refuses the expert too; this keeps the UI honest
    grant.hidden = grantGuardian.hidden = Boolean(connection.consent) || !mayGrant;
    revoke.hidden = !connection.consent;
  };
  const refreshList = async () => {
    try {
      const recordings = await connection.listRecordings();
      list.replaceChildren(...recordings.map((r) => {
        const download = el("button", { type: "button" }, [t.download]);
        download.addEventListener("click", async () => {
          const blob = await connection.fetchRecording(r.recording_id);
          const link = el("a", { href: URL.createObjectURL(blob), download: `recording-${r.recording_id}.webm` });
          link.click();
          setTimeout(() => URL.revokeObjectURL(link.href), 60000);
        });
        return el("li", {}, [`${recordingLabel(r, lang)} `, download]);
      }));
    } catch { /* not a participant, or offline: nothing to list */ }
  };
  const act = (work) => async () => {
    error.textContent = "";
    try {
      await work();
    } catch (err) {
      error.textContent = `${t.consentFailed}: ${err.message}`;
    }
    render();
  };
  grant.addEventListener("click", act(async () => {
    if (window.confirm(t.consentConfirm)) await connection.recordConsent({ givenBy: "patient" });
  }));
  grantGuardian.addEventListener("click", act(async () => {
    if (window.confirm(t.consentConfirm)) await connection.recordConsent({ givenBy: "guardian" });
  }));
  revoke.addEventListener("click", act(() => connection.revokeConsent()));
  connection.addEventListener("recording", (e) => {
    render();
    if (!e.detail.recording) setTimeout(refreshList, 5000); // a stopped recording reaches the cloud shortly
  });
  connection.addEventListener("message", (e) => {
    if (e.detail.type === "error" && e.detail.reason === "recording_unavailable") error.textContent = t.recordingUnavailable;
    if (e.detail.type === "welcome") render();
  });
  connection.loadConsent().catch(() => {}).finally(render);
  refreshList();
  return el("div", { class: "call-consent" }, [
    indicator, el("span", {}, [`${t.consent}:`]), consentState, grant, grantGuardian, revoke, error,
    el("details", {}, [el("summary", {}, [t.recordings]), list]),
  ]);
}

/** Build the call panel in `root`; returns { connection, destroy }. */
export function mountCallPanel(root, { consultationId, token = null, lang = "zh-CN", base } = {}) {
  const t = TEXT[lang] || TEXT["zh-CN"];
  ensureStyle();
  const connection = new CallConnection({ consultationId, token, base: base || window.location.href });
  const sourceVideo = el("video", { autoplay: true, playsInline: true, muted: true, class: "call-source" });
  const peerVideo = el("video", { autoplay: true, playsInline: true, muted: true, class: "call-peer" });
  const audio = el("audio", { autoplay: true });
  const status = el("span", { class: "call-status", "data-role": "status" }, [t.idle]);
  const quality = el("span", { class: "call-quality", "data-role": "quality" }, ["—"]);
  const join = el("button", { type: "button", "data-role": "join" }, [t.join]);
  const mute = el("button", { type: "button", disabled: true, "data-role": "mute" }, [t.mute]);
  const camera = el("button", { type: "button", disabled: true, "data-role": "camera" }, [t.cameraOff]);
  const source = el("select", { disabled: true, "data-role": "source", title: t.source });
  let muted = false;
  let cameraOn = true;

  root.replaceChildren(el("div", { class: "call-panel" }, [
    el("div", { class: "call-videos" }, [sourceVideo, peerVideo, audio]),
    el("div", { class: "call-controls" }, [join, mute, camera, source, status, quality]),
    mountConsent(connection, t, lang),
  ]));

  connection.addEventListener("tracks", (e) => {
    sourceVideo.srcObject = e.detail.source;
    peerVideo.srcObject = e.detail.peer;
    audio.srcObject = e.detail.audio;
  });
  connection.addEventListener("state", (e) => {
    const s = e.detail.state;
    status.textContent = t[s] || s;
    status.dataset.state = s;
    const live = s === "connected" || s === "reconnecting" || s === "connecting";
    join.textContent = live ? t.leave : t.join;
    mute.disabled = camera.disabled = source.disabled = !live;
    source.replaceChildren(...connection.sources.map((name) => el("option", { value: name, selected: name === connection.source }, [t[name] || name])));
  });
  connection.addEventListener("quality", (e) => {
    const q = e.detail;
    const size = q.height ? `${q.height}p` : "";
    quality.textContent = `${t.quality}: ${q.rung || size} · ${Math.round(q.fps)} fps · ${t.loss} ${(q.loss * 100).toFixed(1)}%`;
    quality.dataset.level = q.level;
  });
  connection.addEventListener("message", (e) => {
    if (e.detail.type === "no_media") status.textContent = t.noMedia;
  });
  join.addEventListener("click", () => {
    if (["idle", "closed", "refused", "replaced"].includes(connection.state)) {
      connection.join();
    } else {
      connection.leave();
    }
  });
  mute.addEventListener("click", () => {
    muted = !muted;
    connection.setMuted(muted);
    mute.textContent = muted ? t.unmute : t.mute;
  });
  camera.addEventListener("click", () => {
    cameraOn = !cameraOn;
    connection.setCameraEnabled(cameraOn);
    camera.textContent = cameraOn ? t.cameraOff : t.cameraOn;
  });
  source.addEventListener("change", () => connection.selectSource(source.value));
  return { connection, destroy: () => { connection.leave(); root.replaceChildren(); } };
}
