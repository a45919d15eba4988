// The live feed: one WebSocket to /api/live per page (the session cookie authenticates it, same origin),
// reconnected with capped exponential backoff; subscribers get every message ("vitals", "event", "resync").

const SUBPROTOCOL = 'telemed.live.v1';
const CLOSE_SESSION_ENDED = 4401;
const subscribers = new Set();
let socket = null;
let retry = 0;
let retryTimer = 0;
let stopped = true;
let onSessionEnded = () => {};

function setState(state) {
  const el = document.getElementById('live-state');
  if (el) {
    el.dataset.state = state;
    el.title = state;
  }
}

function open() {
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  setState('connecting');
  socket = new WebSocket(`${scheme}//${location.host}/api/live`, [SUBPROTOCOL]);
  socket.addEventListener('open', () => { retry = 0; setState('open'); });
  socket.addEventListener('message', (event) => {
    let message;
    try { message = JSON.parse(event.data); } catch { return; }
    for (const fn of subscribers) {
      try { fn(message); } catch (err) { console.error('live subscriber failed', err); }
    }
  });
  socket.addEventListener('close', (event) => {
    socket = null;
    setState('closed');
    if (stopped) return;
    if (event.code === CLOSE_SESSION_ENDED) { onSessionEnded(); return; }
    const delay = Math.min(30000, 1000 * 2 ** retry) * (0.75 + Math.random() * 0.5);
    retry += 1;
    retryTimer = setTimeout(open, delay);
    // After a reconnect the server cannot replay what we missed: views refetch.
    for (const fn of subscribers) fn({ type: 'resync' });
  });
}

export function startLive(sessionEnded) {
  onSessionEnded = sessionEnded;
  if (!stopped) return;
  stopped = false;
  open();
}

export function stopLive() {
  stopped = true;
  clearTimeout(retryTimer);
  if (socket) socket.close(1000);
  socket = null;
  setState('closed');
}

/** Call `fn` for every live message until the returned function is called. */
export function subscribe(fn) {
  subscribers.add(fn);
  return () => subscribers.delete(fn);
}
