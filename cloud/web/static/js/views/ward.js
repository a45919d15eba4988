// Ward overview: a tile per patient with live vitals, the NEWS2 badge coloured by risk band and device status,
// highest risk first. Live vitals update the tiles at once; NEWS2 and the order come from the server, refetched
// (debounced) after live changes.

import { api, errorText, qs } from '../api.js';
import { h, clear, debounce } from '../dom.js';
import { t, isZh, fmtTime } from '../i18n.js';
import { subscribe } from '../live.js';

// Tiles show these kinds, in this order (blood pressure as systolic/diastolic).
const SHOWN = ['heart_rate', 'spo2', 'respiratory_rate', 'systolic_bp', 'body_temperature', 'consciousness'];
const DECIMALS = { body_temperature: 1, glucose: 1, body_weight: 1 };
const ARTEFACT_FLAGS = new Set(['sensor_contact_lost', 'motion', 'low_perfusion', 'sensor_displaced',
  'signal_questionable']);
const STALE_MS = 15 * 60 * 1000;
const ACVPU = ['A', 'C', 'V', 'P', 'U'];

export function formatValue(kind, value) {
  if (value === null || value === undefined) return '—';
  if (kind === 'consciousness') return ACVPU[Math.round(value)] ?? String(value);
  return Number(value).toFixed(DECIMALS[kind] ?? 0);
}

/** UCUM units as people write them. */
export function displayUnit(unit) {
  return { 'mm[Hg]': 'mmHg', Cel: '°C', '/min': '/min', 'kg/m2': 'kg/m²' }[unit] ?? (unit || '');
}

export function kindLabel(kind, sample) {
  if (sample && (isZh() ? sample.display_zh : sample.display_en)) return isZh() ? sample.display_zh : sample.display_en;
  return t(`kind.${kind}`);
}

export function news2Badge(news2) {
  if (!news2) return h('div.news2', { title: t('news2.none') }, '–', h('small', {}, 'NEWS2'));
  return h('div.news2', {
    dataset: { risk: news2.risk, testid: 'news2' },
    class: news2.complete ? '' : 'partial',
    title: `${t(`risk.${news2.risk}`)}${news2.complete ? '' : ` · ${t('news2.partial', { missing: news2.missing.join(', ') })}`}`,
  }, String(news2.total), h('small', {}, t(`risk.${news2.risk}`)));
}

function isArtefact(sample) { return (sample.quality_names || []).some((n) => ARTEFACT_FLAGS.has(n)); }

function vitalCell(kind, latest) {
  const sample = latest[kind];
  let text = sample ? formatValue(kind, sample.value) : '—';
  let unit = sample ? sample.unit : '';
  if (kind === 'systolic_bp' && latest.diastolic_bp) text = `${text}/${formatValue('diastolic_bp', latest.diastolic_bp.value)}`;
  if (kind === 'consciousness') unit = '';
  const stale = sample && Date.now() - Date.parse(sample.time) > STALE_MS;
  return h('div.vital', { dataset: { kind }, class: `${sample && isArtefact(sample) ? 'artefact' : ''} ${stale ? 'stale' : ''}`,
    title: sample ? `${fmtTime(sample.time)}${isArtefact(sample) ? ` · ${t('ward.artefact')}` : ''}` : '' },
  h('div.label', {}, kind === 'systolic_bp' ? t('kind.blood_pressure') : kindLabel(kind, sample)),
  h('span.value', {}, text), h('span.unit', {}, displayUnit(unit)));
}

function deviceBadge(device) {
  const state = device.state || 'unknown';
  const classes = [state, device.low_battery ? 'low-battery' : ''].join(' ');
  const battery = device.battery_pct === null ? '' : ` ${Math.round(device.battery_pct)}%`;
  const label = state === 'connected' ? '' : ` · ${t(`device.${state}`)}`;
  return h('span.device', { class: classes, dataset: { device: device.device_id }, title: device.device_type || '' },
    `${device.device_id}${battery}${label}`);
}

const siteNames = new Map();

function tile(patient, onOpen) {
  const latest = Object.fromEntries(patient.latest.map((s) => [s.kind, s]));
  const risk = patient.news2 ? patient.news2.risk : 'none';
  const technical = [];
  if (patient.artefact) technical.push(t('ward.artefact'));
  if (patient.devices.some((d) => d.state && d.state !== 'connected')) technical.push(t('ward.disconnected'));
  if (patient.devices.some((d) => d.low_battery)) technical.push(t('ward.low_battery'));
  return h('article.tile', { dataset: { risk, patient: patient.patient_id }, tabindex: 0,
    onclick: () => onOpen(patient.patient_id), onkeydown: (e) => { if (e.key === 'Enter') onOpen(patient.patient_id); } },
  h('div.tile-head', {},
    h('div', {}, h('div.who', {}, patient.patient_id),
      h('div.where', {}, [siteNames.get(patient.site_id) || patient.site_name, patient.ward, patient.bed && t('ward.bed', { bed: patient.bed })].filter(Boolean).join(' · '))),
    news2Badge(patient.news2)),
  h('div.vitals', {}, SHOWN.filter((k) => k !== 'consciousness' || latest.consciousness).map((k) => vitalCell(k, latest))),
  patient.devices.length ? h('div.devices', {}, patient.devices.map(deviceBadge)) : null,
  technical.length ? h('div.tech', { dataset: { testid: 'technical' } }, `⚠ ${technical.join(' · ')}`) : null);
}

export async function render(root, { navigate }) {
  let site = sessionStorage.getItem('telemed.ward.site') || '';
  let data = null;
  const status = h('span.muted', { id: 'ward-updated' });
  const siteSelect = h('select', { id: 'ward-site', onchange() { site = siteSelect.value; sessionStorage.setItem('telemed.ward.site', site); load(); } });
  const grid = h('section.tiles', { id: 'ward-tiles' });
  root.append(h('div.row', {}, h('h1', {}, t('ward.title')), h('span.spacer'), siteSelect, status), grid);
  const open = (id) => navigate(`#/patient/${encodeURIComponent(id)}`);

  function draw() {
    clear(grid);
    if (!data.patients.length) { grid.append(h('p.empty', {}, t('ward.empty'))); return; }
    for (const patient of data.patients) grid.append(tile(patient, open));
  }

  async function load() {
    try {
      data = await api(`/api/ward/overview${qs({ site })}`);
    } catch (err) {
      status.textContent = errorText(err);
      return;
    }
    for (const s of data.sites) siteNames.set(s.site_id, (isZh() && s.name_zh) || s.name);
    clear(siteSelect);
    siteSelect.append(h('option', { value: '' }, t('ward.all_sites')));
    for (const s of data.sites) siteSelect.append(h('option', { value: s.site_id }, (isZh() && s.name_zh) || s.name));
    siteSelect.value = site;
    siteSelect.hidden = data.sites.length < 2 && !site;
    status.textContent = t('ward.updated', { time: fmtTime(data.generated_at) });
    draw();
  }
  const refresh = debounce(load, 2500);

  function applyVitals(message) {
    const patient = data && data.patients.find((p) => p.patient_id === message.patient_id);
    if (!patient) { if (data) refresh(); return; }
    const byKind = Object.fromEntries(patient.latest.map((s) => [s.kind, s]));
    for (const [kind, sample] of Object.entries(message.latest)) {
      byKind[kind] = { ...(byKind[kind] || { kind }), ...sample };
    }
    patient.latest = Object.values(byKind);
    const old = grid.querySelector(`[data-patient="${CSS.escape(patient.patient_id)}"]`);
    const fresh = tile(patient, open);
    fresh.classList.add('flash');
    if (old) old.replaceWith(fresh);
    refresh(); // NEWS2 and the ordering are the server's
  }

  const unsubscribe = subscribe((message) => {
    if (message.type === 'vitals') applyVitals(message);
    else if (message.type === 'resync' || (message.type === 'event' && message.event_type === 'device_status')) refresh();
  });
  await load();
  const timer = setInterval(load, 60000);
  return () => { unsubscribe(); clearInterval(timer); };
}
