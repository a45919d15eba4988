// Admin: edges (online, outbox depth, last seen), devices and assignments, users, on-call schedules and
// escalation policies, and statistics charts. Each tab reads its own API; a tab whose API is missing says so.

import { api, errorText, qs, ApiError } from '../api.js';
import { h, clear } from '../dom.js';
import { t, isZh, fmtDateTime, fmtDuration } from '../i18n.js';
import { barChart } from '../charts.js';

const TABS = ['edges', 'devices', 'users', 'oncall', 'stats'];

function table(headers, rows, props = {}) {
  return h('table', props, h('thead', {}, h('tr', {}, headers.map((k) => h('th', {}, t(k))))),
    h('tbody', {}, rows));
}

function unavailable(err) {
  return h('p.muted', {}, err instanceof ApiError && err.status === 404 ? t('feature.unavailable') : errorText(err));
}

async function edgesTab(host) {
  const data = await api('/api/admin/edges');
  host.append(table(['admin.edge', 'admin.site', 'admin.status', 'admin.online', 'admin.last_seen', 'admin.outbox',
    'admin.devices_connected', 'admin.version'], data.edges.map((e) => h('tr', { dataset: { edge: e.edge_id } },
    h('td', {}, e.name ? `${e.name} (${e.edge_id})` : e.edge_id), h('td', {}, (isZh() && e.site_name_zh) || e.site_name),
    h('td', {}, t(`admin.edge_status.${e.status}`)),
    h('td', {}, e.online === null ? '—' : h('span', { class: e.online ? 'online' : 'offline' }, t(e.online ? 'admin.online_yes' : 'admin.online_no'))),
    h('td', {}, fmtDateTime(e.last_seen_at)),
    h('td', { title: Object.entries(e.outbox).map(([lane, l]) => `${lane}: ${l.depth} (${fmtDuration(l.oldest_age_s)})`).join('\n') },
      e.outbox_depth === null ? '—' : String(e.outbox_depth)),
    h('td', {}, e.devices_connected ?? '—'), h('td', {}, e.software_version || '—'))), { id: 'edges' }));
}

async function devicesTab(host) {
  const data = await api('/api/admin/devices');
  host.append(table(['admin.device', 'admin.site', 'admin.type', 'admin.state', 'admin.battery', 'admin.last_seen',
    'admin.patient'], data.devices.map((d) => h('tr', { dataset: { device: d.device_id } },
    h('td', {}, d.device_id), h('td', {}, d.site_name || '—'), h('td', {}, `${d.device_type || ''} ${d.model || ''}`),
    h('td', {}, d.state ? t(`device.${d.state}`) : '—'), h('td', {}, d.battery_pct === null ? '—' : `${Math.round(d.battery_pct)}%`),
    h('td', {}, fmtDateTime(d.last_seen_at)),
    h('td', {}, d.patient_id ? h('a', { href: `#/patient/${encodeURIComponent(d.patient_id)}` }, d.patient_id) : '—'))),
  { id: 'devices' }));
}

async function usersTab(host) {
  const data = await api(`/api/admin/users${qs({ limit: 500 })}`);
  host.append(table(['admin.username', 'admin.name', 'admin.roles', 'admin.site', 'admin.sessions', 'admin.disabled'],
    data.users.map((u) => h('tr', { dataset: { user: u.username } }, h('td', {}, u.username), h('td', {}, u.display_name),
      h('td', {}, u.roles.map((r) => t(`role.${r}`)).join(', ')), h('td', {}, u.site_id || '—'),
      h('td', {}, String(u.live_sessions)), h('td', {}, u.disabled ? '✓' : ''))), { id: 'users' }));
}

async function oncallTab(host) {
  const [overview, policies] = await Promise.all([api('/api/ward/overview'),
    api('/api/alerting/policies').catch((err) => err)]);
  if (!overview.sites.length) { host.append(h('p.muted', {}, '—')); return; }
  const sections = await Promise.all(overview.sites.map(async (site) => {
    const section = h('section.panel', { dataset: { site: site.site_id } }, h('h2', {}, (isZh() && site.name_zh) || site.name));
    try {
      const now = await api(`/api/oncall/now${qs({ site: site.site_id })}`);
      const rows = now.departments.flatMap((d) => d.tiers.map((tier) => h('tr', { dataset: { tier: tier.tier } },
        h('td', {}, (isZh() && d.name_zh) || d.name), h('td', {}, t(`tier.${tier.tier}`)),
        h('td', {}, tier.now ? `${tier.now.display_name || tier.now.username} (${t('admin.until', { time: fmtDateTime(tier.now.ends_at) })})` : '—'),
        h('td', {}, tier.next ? `${tier.next.display_name || tier.next.username} (${fmtDateTime(tier.next.starts_at)})` : '—'))));
      section.append(rows.length ? table(['admin.department', 'admin.tier', 'admin.now', 'admin.next'], rows)
        : h('p.muted', {}, t('admin.no_rota')));
    } catch (err) { section.append(unavailable(err)); }
    section.append(h('h3', {}, t('admin.policies')));
    if (policies instanceof Error) { section.append(unavailable(policies)); return section; }
    const mine = policies.filter((p) => p.site_id === site.site_id);
    section.append(mine.length ? h('ul', { dataset: { policies: site.site_id } }, mine.map((p) => h('li.mono', {},
      `${p.department_id || t('admin.site_default')}: ${(p.policy.steps || []).map((s) => t(`tier.${s}`)).join(' → ')}`
      + ` · ${Object.entries(p.policy.delays_s || {}).map(([k, v]) => `${t(`priority.${k}`)} ${fmtDuration(v)}`).join(', ')}`
      + ` · ×${p.policy.repeat ?? 1}`))) : h('p.muted', {}, t('admin.default_policy')));
    return section;
  }));
  host.append(...sections);
}

async function statsTab(host, charts) {
  const data = await api(`/api/admin/stats${qs({ days: 14 })}`);
  const days = data.consultations.map((d) => d.day);
  const volume = h('div.plot', { id: 'stats-consultations' });
  const response = h('div.plot', { id: 'stats-response' });
  const alerts = h('div.plot', { id: 'stats-alerts' });
  host.append(h('div.grid2', {},
    h('div.chart', {}, h('h3', {}, t('admin.stats.consultations')), volume),
    h('div.chart', {}, h('h3', {}, t('admin.stats.response')), response),
    h('div.chart', {}, h('h3', {}, t('admin.stats.alerts')), alerts)));
  charts.push(barChart(volume, { days, groups: [{ label: t('admin.stats.requests'), values: data.consultations.map((d) => d.count), fill: '#0b6e6e' }] }));
  charts.push(barChart(response, { days, groups: [
    { label: t('admin.stats.within_sla'), values: data.responses.map((r) => r.within_sla), fill: '#2e9d4f' },
    { label: t('admin.stats.late'), values: data.responses.map((r) => r.accepted - r.within_sla), fill: '#d62f2f' }] }));
  charts.push(barChart(alerts, { days, groups: [
    { label: t('priority.high'), values: data.alerts.map((a) => a.high), fill: '#d62f2f' },
    { label: t('priority.medium'), values: data.alerts.map((a) => a.medium), fill: '#f2c200' },
    { label: t('priority.low'), values: data.alerts.map((a) => a.low), fill: '#19b5d1' }] }));
  const medians = data.responses.filter((r) => r.median_response_s !== null);
  host.append(h('p.muted', {}, t('admin.stats.median', { value: medians.length
    ? fmtDuration(medians.reduce((s, r) => s + r.median_response_s, 0) / medians.length) : '—' })));
}

export async function render(root, { navigate }, tab) {
  const current = TABS.includes(tab) ? tab : 'edges';
  const host = h('div', { id: 'admin-tab' });
  const charts = [];
  root.append(h('h1', {}, t('admin.title')),
    h('div.tabs', {}, TABS.map((name) => h('button', { class: name === current ? 'active' : '', dataset: { tab: name },
      onclick: () => navigate(`#/admin/${name}`) }, t(`admin.tab.${name}`)))), host);
  const loaders = { edges: edgesTab, devices: devicesTab, users: usersTab, oncall: oncallTab, stats: statsTab };
  try { await loaders[current](host, charts); } catch (err) { clear(host).append(unavailable(err)); }
  return () => charts.forEach((c) => c.destroy());
}
