// Audible alarm signals after IEC 60601-1-8 (table 3, clause 6.3.3): a high-priority burst is 10 pulses
// (3 + 2, pause, 3 + 2), a medium-priority burst 3 pulses, repeated while an alarm is unacknowledged. The
// pulse has a fundamental within 150-1000 Hz and harmonics (a square wave), 150 ms with 20 ms rise/fall.
// Browsers only play sound after a user gesture: the context is resumed on the first click (the login).
// "Audio paused" silences the sound for 2 minutes (the visual signals keep flashing).

const PULSE_S = 0.15;
const RAMP_S = 0.02;
const FREQ_HZ = 523.25; // C5
const HIGH_OFFSETS = [0, 0.25, 0.5, 0.95, 1.2, 2.0, 2.25, 2.5, 2.95, 3.2];
const MEDIUM_OFFSETS = [0, 0.3, 0.6];
const REPEAT_S = { high: 8, medium: 15 };
export const PAUSE_MS = 120000;

let ctx = null;
let timer = 0;
let active = null; // 'high' | 'medium' | null
let pausedUntil = 0;
export const stats = { bursts: 0 }; // read by the browser tests

function context() {
  if (!ctx) {
    const Ctor = window.AudioContext || window.webkitAudioContext;
    if (!Ctor) return null;
    ctx = new Ctor();
  }
  if (ctx.state === 'suspended') ctx.resume().catch(() => {});
  return ctx;
}

export function unlockAudio() {
  const c = context();
  return c !== null;
}

function pulse(c, at) {
  const osc = c.createOscillator();
  const gain = c.createGain();
  osc.type = 'square';
  osc.frequency.value = FREQ_HZ;
  gain.gain.setValueAtTime(0, at);
  gain.gain.linearRampToValueAtTime(0.12, at + RAMP_S);
  gain.gain.setValueAtTime(0.12, at + PULSE_S - RAMP_S);
  gain.gain.linearRampToValueAtTime(0, at + PULSE_S);
  osc.connect(gain).connect(c.destination);
  osc.start(at);
  osc.stop(at + PULSE_S + 0.01);
}

function burst(priority) {
  stats.bursts += 1;
  if (Date.now() < pausedUntil) return;
  const c = context();
  if (!c) return;
  const start = c.currentTime + 0.05;
  for (const offset of priority === 'high' ? HIGH_OFFSETS : MEDIUM_OFFSETS) pulse(c, start + offset);
}

/** Sound the highest priority of the unacknowledged alarms ('high', 'medium' or null for silence). */
export function setAlarm(priority) {
  const next = priority === 'high' || priority === 'medium' ? priority : null;
  if (next === active) return;
  active = next;
  clearInterval(timer);
  timer = 0;
  if (active) {
    burst(active);
    timer = setInterval(() => burst(active), REPEAT_S[active] * 1000);
  }
  renderPauseButton();
}

export function pauseAudio() {
  pausedUntil = Date.now() + PAUSE_MS;
  renderPauseButton();
  setTimeout(renderPauseButton, PAUSE_MS + 50);
}

export function audioPaused() { return Date.now() < pausedUntil; }

let label = (paused) => (paused ? 'paused' : 'pause');
export function setPauseLabel(fn) { label = fn; renderPauseButton(); }

function renderPauseButton() {
  const button = document.getElementById('alarm-pause');
  if (!button) return;
  button.hidden = !active;
  const paused = audioPaused();
  button.classList.toggle('paused', paused);
  button.textContent = label(paused);
}
