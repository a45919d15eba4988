// The dashboard's entry point: session, role-aware navigation and a hash router over the views in js/views/.

import { api, setUnauthorizedHandler } from './js/api.js';
import { h, clear, toast } from './js/dom.js';
import { initI18n, setLocale, currentLocale, t, translateStatic } from './js/i18n.js';
import { startLive, stopLive } from './js/live.js';
import { pauseAudio, setAlarm, setPauseLabel, unlockAudio } from './js/alarm.js';
import * as loginView from './js/views/login.js';
import * as wardView from './js/views/ward.js';
import * as patientView from './js/views/patient.js';
import * as alertsView from './js/views/alerts.js';
import * as consultView from './js/views/consult.js';
import * as viewerView from './js/views/viewer.js';
import * as adminView from './js/views/admin.js';

const CLINICAL = ['admin', 'county_doctor', 'expert', 'on_call'];
const ROUTES = [
  { name: 'ward', pattern: /^\/ward$/, view: wardView, roles: CLINICAL, nav: true },
  { name: 'patient', pattern: /^\/patient\/([^/]+)$/, view: patientView, roles: CLINICAL },
  { name: 'alerts', pattern: /^\/alerts$/, view: alertsView, roles: ['admin', 'county_doctor', 'on_call'], nav: true },
  { name: 'consult', pattern: /^\/consult(?:\/([^/]+))?$/, view: consultView, roles: ['admin', 'county_doctor', 'expert'],
    nav: true },
  { name: 'viewer', pattern: /^\/viewer(?:\/([^/]+))?$/, view: viewerView, roles: ['admin', 'county_doctor', 'expert', 'on_call'],
    nav: true },
  { name: 'admin', pattern: /^\/admin(?:\/([^/]+))?$/, view: adminView, roles: ['admin'], nav: true },
];

const state = { user: null, cleanup: null, alertMonitor: null };

function allowed(route) { return state.user && route.roles.some((r) => state.user.roles.includes(r)); }

function home() {
  const roles = state.user.roles;
  if (roles.includes('on_call') && !roles.includes('county_doctor') && !roles.includes('admin')) return '#/alerts';
  if (roles.includes('expert') && roles.length === 1) return '#/consult';
  return '#/ward';
}

export function navigate(hash) {
  if (location.hash === hash) render(); else location.hash = hash;
}

function renderNav(active) {
  const nav = document.getElementById('nav');
  clear(nav);
  for (const route of ROUTES.filter((r) => r.nav && allowed(r))) {
    const link = h('a', { href: `#/${route.name}`, class: route.name === active ? 'active' : '', dataset: { nav: route.name } },
      t(`nav.${route.name}`));
    if (route.name === 'alerts') link.append(h('span.badge', { id: 'alert-badge', hidden: true }));
    nav.append(link);
  }
  document.getElementById('whoami').textContent = state.user.display_name || state.user.username;
  if (state.alertMonitor) state.alertMonitor.refreshBadge();
}

async function render() {
  if (state.cleanup) { try { state.cleanup(); } catch (err) { console.error(err); } state.cleanup = null; }
  const root = document.getElementById('view');
  clear(root);
  translateStatic();
  if (!state.user) {
    document.getElementById('topbar').hidden = true;
    await loginView.render(root, { onLogin });
    return;
  }
  document.getElementById('topbar').hidden = false;
  const path = (location.hash || '').replace(/^#/, '') || '/';
  const route = ROUTES.find((r) => r.pattern.test(path));
  if (!route || !allowed(route)) { location.replace(home()); return; }
  renderNav(route.name);
  const params = path.match(route.pattern).slice(1).map((p) => (p === undefined ? undefined : decodeURIComponent(p)));
  try {
    state.cleanup = (await route.view.render(root, { user: state.user, navigate }, ...params)) || null;
  } catch (err) {
    console.error(err);
    root.append(h('p.error', t('error.load', { message: err.message || String(err) })));
  }
}

async function onLogin(user) {
  state.user = user;
  unlockAudio(); // the login click is the user gesture browsers require before sound
  startSession();
  location.hash = home();
  await render();
}

function startSession() {
  startLive(() => sessionEnded());
  if (state.user.roles.some((r) => ['admin', 'county_doctor', 'on_call'].includes(r))) {
    state.alertMonitor = alertsView.monitor(state.user);
  }
}

function sessionEnded() {
  stopLive();
  if (state.alertMonitor) { state.alertMonitor.stop(); state.alertMonitor = null; }
  setAlarm(null);
  state.user = null;
  render();
}

async function logout() {
  try { await api('/api/auth/logout', { method: 'POST' }); } catch { /* already gone */ }
  sessionEnded();
}

async function boot() {
  await initI18n();
  setPauseLabel((paused) => (paused ? t('alarm.paused') : t('alarm.pause')));
  const locale = document.getElementById('locale');
  locale.value = currentLocale();
  locale.addEventListener('change', async () => { await setLocale(locale.value); await render(); });
  document.getElementById('logout').addEventListener('click', logout);
  document.getElementById('alarm-pause').addEventListener('click', pauseAudio);
  setUnauthorizedHandler(() => { if (state.user) { toast(t('error.session'), { error: true }); sessionEnded(); } });
  try {
    state.user = await api('/api/me');
    startSession();
  } catch {
    state.user = null;
  }
  window.addEventListener('hashchange', render);
  document.addEventListener('click', unlockAudio, { once: true });
  await render();
  document.body.dataset.ready = 'true';
}

boot();
