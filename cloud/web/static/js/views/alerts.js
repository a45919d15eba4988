// The alert inbox (docs/alerting.md: /api/incidents): IEC 60601-1-8 priority colours (high red flashing,
// medium yellow flashing, low cyan), acknowledge and resolve, escalation state. `monitor` keeps the nav badge
// and the audible alarm in step with the unacknowledged incidents on every page.

import { api, errorText, qs, ApiError } from '../api.js';
import { h, clear, debounce, toast } from '../dom.js';
import { t, fmtDateTime, fmtDuration } from '../i18n.js';
import { subscribe } from '../live.js';
import { setAlarm } from '../alarm.js';

export const INCIDENTS = '/api/incidents';
const CHANGED = 'telemed:alerts-changed';
const ACTIONS = { acknowledge: 'acknowledge', resolve: 'resolve' };
const PRIORITY_ORDER = { high: 0, medium: 1, low: 2 };
const STATE_ORDER = { triggered: 0, acknowledged: 1, resolved: 2 };
const ACTORS = ['admin', 'county_doctor', 'on_call'];

function sortIncidents(items) {
  return items.slice().sort((a, b) => (STATE_ORDER[a.state] - STATE_ORDER[b.state])
    || (PRIORITY_ORDER[a.priority] - PRIORITY_ORDER[b.priority]) || (Date.parse(b.raised_at) - Date.parse(a.raised_at)));
}

function escalation(incident) {
  if (incident.state !== 'triggered') return null;
  const parts = [t('alerts.escalation_step', { step: incident.escalation_steps })];
  if (incident.next_page_at) {
    const left = (Date.parse(incident.next_page_at) - Date.now()) / 1000;
    parts.push(left > 0 ? t('alerts.next_page', { time: fmtDuration(left) }) : t('alerts.page_due'));
  }
  return h('span.muted', { dataset: { testid: 'escalation' } }, parts.join(' · '));
}

function card(incident, user, { compact, onChanged }) {
  const canAct = user.roles.some((r) => ACTORS.includes(r)) && incident.state !== 'resolved';
  async function act(action) {
    try {
      await api(`${INCIDENTS}/${incident.incident_id}/${ACTIONS[action]}`, { method: 'POST', body: {} });
      toast(t(`alerts.${action}d`));
      window.dispatchEvent(new Event(CHANGED));
      onChanged();
    } catch (err) {
      toast(errorText(err), { error: true });
    }
  }
  const who = incident.state === 'acknowledged' && incident.acknowledged_by
    ? t('alerts.acknowledged_by', { name: incident.acknowledged_by.name, time: fmtDateTime(incident.acknowledged_at) })
    : incident.state === 'resolved' && incident.resolved_by
      ? t('alerts.resolved_by', { name: incident.resolved_by.name, time: fmtDateTime(incident.resolved_at) })
      : null;
  return h('article.alarm-card.alarm', { dataset: { priority: incident.priority, state: incident.state,
    incident: incident.incident_id } },
  h('div.row', {},
    h('span.prio', { dataset: { priority: incident.priority } }, t(`priority.${incident.priority}`)),
    h('span.state', { dataset: { state: incident.state } }, t(`alerts.state.${incident.state}`)),
    compact ? null : h('a', { href: `#/patient/${encodeURIComponent(incident.patient_id)}` }, incident.patient_id),
    h('strong', {}, incident.message),
    h('span.spacer'),
    h('span.muted', {}, fmtDateTime(incident.raised_at))),
  h('div.row.muted', {},
    h('span', {}, `${t('alerts.rule')}: ${incident.rule}`),
    incident.kind ? h('span', {}, `${t(`kind.${incident.kind}`)} ${incident.value ?? ''}`) : null,
    incident.category !== 'clinical' ? h('span.pill', {}, t(`alerts.category.${incident.category}`)) : null,
    who ? h('span', {}, who) : null,
    escalation(incident)),
  canAct ? h('div.actions', {},
    incident.state === 'triggered' ? h('button', { dataset: { action: 'acknowledge' }, onclick: () => act('acknowledge') },
      t('alerts.acknowledge')) : null,
    h('button.secondary', { dataset: { action: 'resolve' }, onclick: () => act('resolve') }, t('alerts.resolve'))) : null);
}

/** A list of incidents for `filter` (used by the inbox and the patient page). */
export async function incidentList(filter, user, { compact = false, onChanged = () => {} } = {}) {
  try {
    const data = await api(`${INCIDENTS}${qs(filter)}`);
    if (!data.incidents.length) return h('p.muted', {}, t('alerts.none'));
    return h('div.alarm-list', {}, sortIncidents(data.incidents).map((i) => card(i, user, { compact, onChanged })));
  } catch (err) {
    if (err instanceof ApiError && (err.status === 404 || err.status === 405)) return h('p.muted', {}, t('feature.unavailable'));
    return h('p.error', {}, errorText(err));
  }
}

export async function render(root, { user }) {
  let show = 'open';
  const host = h('div', { id: 'alert-list' });
  const tabs = ['open', 'triggered', 'resolved', 'all'].map((name) => h('button', { class: name === show ? 'active' : '',
    dataset: { filter: name },
    onclick(e) { show = name; for (const b of tabs) b.classList.toggle('active', b === e.currentTarget); load(); } },
  t(`alerts.filter.${name}`)));
  root.append(h('div.row', {}, h('h1', {}, t('alerts.title'))), h('div.tabs', {}, tabs), host);

  async function load() {
    const filters = show === 'open' ? [{ state: 'triggered' }, { state: 'acknowledged' }]
      : show === 'all' ? [{}] : [{ state: show }];
    const lists = await Promise.all(filters.map((f) => incidentList({ ...f, limit: 200 }, user, { onChanged: load })));
    clear(host);
    const cards = lists.flatMap((el) => (el.classList.contains('alarm-list') ? [...el.children] : []));
    if (cards.length) host.append(h('div.alarm-list', {}, cards));
    else host.append(lists[0]);
  }
  const refresh = debounce(load, 500);
  const unsubscribe = subscribe((m) => { if ((m.type === 'event' && m.event_type === 'alert') || m.type === 'resync') refresh(); });
  const timer = setInterval(load, 15000);
  await load();
  return () => { unsubscribe(); clearInterval(timer); };
}

/** Keep the nav badge and the audible alarm in step with the unacknowledged clinical incidents. */
export function monitor() {
  let count = 0;
  let stopped = false;
  async function poll() {
    if (stopped) return;
    try {
      const data = await api(`${INCIDENTS}${qs({ state: 'triggered', limit: 200 })}`);
      const clinical = data.incidents.filter((i) => i.category !== 'advisory');
      count = clinical.length;
      const top = clinical.map((i) => i.priority).sort((a, b) => PRIORITY_ORDER[a] - PRIORITY_ORDER[b])[0] || null;
      setAlarm(top);
    } catch {
      count = 0; // no alerting API (yet), or the session ended: nothing to sound
      setAlarm(null);
    }
    refreshBadge();
  }
  function refreshBadge() {
    const badge = document.getElementById('alert-badge');
    if (!badge) return;
    badge.hidden = count === 0;
    badge.textContent = String(count);
  }
  const refresh = debounce(poll, 300);
  const unsubscribe = subscribe((m) => { if ((m.type === 'event' && m.event_type === 'alert') || m.type === 'resync') refresh(); });
  const timer = setInterval(poll, 15000);
  window.addEventListener(CHANGED, refresh);
  poll();
  return { refreshBadge, stop() {
    stopped = true; unsubscribe(); clearInterval(timer); window.removeEventListener(CHANGED, refresh); setAlarm(null);
  } };
}
