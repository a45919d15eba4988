// A patient: zoomable vitals charts (a drag refetches the range at one bucket per pixel), the NEWS2 trend,
// alert history, consultations and imaging studies.

import { api, errorText, qs, ApiError } from '../api.js';
import { h, clear, debounce } from '../dom.js';
import { t, isZh, fmtDateTime, fmtDicomDate } from '../i18n.js';
import { subscribe } from '../live.js';
import { timeChart, bucketColumns, mergeColumns } from '../charts.js';
import { news2Badge } from './ward.js';
import { incidentList } from './alerts.js';

const PRESETS = [['1h', 3600], ['6h', 6 * 3600], ['24h', 24 * 3600], ['7d', 7 * 24 * 3600]];
const CHARTS = [
  { id: 'hr', kinds: ['heart_rate'], stroke: ['#d62f2f'], unit: '/min' },
  { id: 'spo2', kinds: ['spo2'], stroke: ['#1f6fd1'], unit: '%' },
  { id: 'rr', kinds: ['respiratory_rate'], stroke: ['#2e9d4f'], unit: '/min' },
  { id: 'bp', kinds: ['systolic_bp', 'diastolic_bp'], stroke: ['#7b3fb5', '#b07ad6'], unit: 'mmHg' },
  { id: 'temp', kinds: ['body_temperature'], stroke: ['#e07b00'], unit: '°C', decimals: 1 },
];

const iso = (sec) => new Date(sec * 1000).toISOString();

export async function render(root, { user, navigate }, patientId) {
  const base = `/api/patients/${encodeURIComponent(patientId)}`;
  let span = 24 * 3600;
  let zoom = null; // [startSec, endSec] while zoomed
  const charts = [];
  const rangeInfo = h('span.muted', { id: 'range-info' });
  const resetZoom = h('button.secondary', { id: 'reset-zoom', hidden: true, onclick() { zoom = null; loadSeries(); loadNews2(); } },
    t('patient.reset_zoom'));
  const presetButtons = PRESETS.map(([label, seconds]) => h('button.secondary', {
    dataset: { span: label }, class: seconds === span ? 'active' : '',
    onclick(e) {
      span = seconds; zoom = null;
      for (const b of presetButtons) b.classList.toggle('active', b === e.currentTarget);
      loadSeries(); loadNews2();
    } }, label));
  const head = h('div.patient-head', {}, h('h1', {}, t('patient.title', { id: patientId })), h('span', { id: 'patient-news2' }));
  const chartGrid = h('section.grid2', { id: 'charts' });
  const news2Host = h('div.plot', { id: 'news2-chart' });
  const alertsHost = h('div', { id: 'patient-alerts' });
  const consultHost = h('div', { id: 'patient-consultations' });
  const studiesHost = h('div', { id: 'patient-studies' });
  root.append(head,
    h('div.row.range-buttons', {}, presetButtons, resetZoom, h('span.spacer'), rangeInfo),
    chartGrid,
    h('div.chart', {}, h('h3', {}, t('patient.news2_trend')), news2Host),
    h('div.grid2', {},
      h('section.panel', {}, h('h2', {}, t('patient.alerts')), alertsHost),
      h('section.panel', {}, h('h2', {}, t('patient.consultations')), consultHost)),
    h('section.panel', {}, h('h2', {}, t('patient.studies')), studiesHost));

  for (const spec of CHARTS) {
    const host = h('div.plot');
    const readout = h('span.readout');
    chartGrid.append(h('div.chart', { dataset: { chart: spec.id } },
      h('h3', {}, spec.kinds.map((k) => t(`kind.${k}`)).join(' / '), ' ', h('span.muted', {}, spec.unit), readout), host));
    const chart = timeChart(host, {
      readout,
      lines: spec.kinds.map((k, i) => ({ label: t(`kind.${k}`), stroke: spec.stroke[i], decimals: spec.decimals,
        band: `${spec.stroke[i]}22` })),
      onZoom(start, end) { zoom = [start, end]; loadSeries(); loadNews2(); },
    });
    charts.push({ spec, chart });
  }
  const news2Readout = h('span.readout');
  news2Host.before(news2Readout);
  const news2Chart = timeChart(news2Host, { readout: news2Readout, lines: [{ label: 'NEWS2', stroke: '#10303f', band: '#10303f11' }],
    height: 160, step: true, yRange: [0, 20], onZoom(start, end) { zoom = [start, end]; loadSeries(); loadNews2(); } });

  function range() {
    if (zoom) return zoom;
    const end = Date.now() / 1000;
    return [end - span, end];
  }

  // Answers to superseded requests (the user zoomed again meanwhile) are dropped.
  let seriesGeneration = 0;
  let news2Generation = 0;

  async function loadSeries() {
    const generation = ++seriesGeneration;
    const [start, end] = range();
    resetZoom.hidden = !zoom;
    rangeInfo.textContent = `${fmtDateTime(iso(start))} – ${fmtDateTime(iso(end))}`;
    await Promise.all(charts.map(async ({ spec, chart }) => {
      const width = chart.width();
      try {
        const tables = await Promise.all(spec.kinds.map(async (kind) => {
          const series = await api(`${base}/vitals${qs({ kind, start: iso(start), end: iso(end), max_points: width })}`);
          return bucketColumns(series.buckets, series.bucket_seconds);
        }));
        if (generation !== seriesGeneration) return;
        chart.setData(mergeColumns(tables), [start, end]);
        chart.plot.root.dataset.buckets = String(tables.reduce((n, tb) => n + tb[0].length, 0));
        chart.plot.root.dataset.maxPoints = String(width);
      } catch (err) {
        chart.plot.root.title = errorText(err);
      }
    }));
  }

  async function loadNews2() {
    const generation = ++news2Generation;
    const [start, end] = range();
    try {
      const history = await api(`${base}/news2${qs({ start: iso(start), end: iso(end), max_points: news2Chart.width() })}`);
      if (generation !== news2Generation) return;
      const xs = history.points.map((p) => Date.parse(p.time) / 1000);
      const totals = history.points.map((p) => p.total);
      news2Chart.setData([xs, totals, totals, totals], [start, end]);
    } catch (err) {
      news2Host.title = errorText(err);
    }
  }

  async function loadHead() {
    try {
      const overview = await api('/api/ward/overview');
      const me = overview.patients.find((p) => p.patient_id === patientId);
      const badge = document.getElementById('patient-news2');
      clear(badge);
      const site = overview.sites.find((x) => x.site_id === (me && me.site_id));
      const siteName = (site && isZh() && site.name_zh) || (me && me.site_name);
      if (me) badge.append(news2Badge(me.news2), h('span.muted', {}, [siteName, me.ward, me.bed && t('ward.bed', { bed: me.bed })].filter(Boolean).join(' · ')));
    } catch { /* the charts say what is wrong */ }
  }

  async function loadAlerts() {
    clear(alertsHost);
    alertsHost.append(await incidentList({ patient: patientId, limit: 20 }, user, { compact: true }));
  }

  async function loadConsultations() {
    clear(consultHost);
    if (!user.roles.some((r) => ['admin', 'county_doctor', 'expert'].includes(r))) {
      consultHost.append(h('p.muted', {}, t('patient.no_access'))); return;
    }
    try {
      const list = await api(`/api/consultations${qs({ patient_id: patientId, limit: 20 })}`);
      if (!list.consultations.length) { consultHost.append(h('p.muted', {}, t('consult.none'))); return; }
      consultHost.append(h('ul', {}, list.consultations.map((c) => h('li', {},
        h('a', { href: `#/consult/${c.consultation_id}` }, `${fmtDateTime(c.created_at)} · ${t(`consult.state.${c.state}`)}`),
        ' ', h('span.urgency', { dataset: { urgency: c.urgency } }, t(`urgency.${c.urgency}`)), ' ', c.chief_complaint))));
    } catch (err) {
      consultHost.append(h('p.muted', {}, err instanceof ApiError && err.status === 404 ? t('feature.unavailable') : errorText(err)));
    }
  }

  async function loadStudies() {
    clear(studiesHost);
    try {
      const res = await fetch(`/dicomweb/studies${qs({ PatientID: patientId })}`, { headers: { Accept: 'application/dicom+json' } });
      if (!res.ok) throw new ApiError(res.status, res.statusText);
      const studies = await res.json();
      if (!studies.length) { studiesHost.append(h('p.muted', {}, t('viewer.no_studies'))); return; }
      studiesHost.append(h('ul', {}, studies.map((s) => {
        const uid = s['0020000D'].Value[0];
        const date = s['00080020'] && s['00080020'].Value ? s['00080020'].Value[0] : '';
        const desc = s['00081030'] && s['00081030'].Value ? s['00081030'].Value[0] : '';
        const mods = s['00080061'] && s['00080061'].Value ? s['00080061'].Value.join('/') : '';
        return h('li', {}, h('a', { href: `#/viewer/${uid}` }, `${fmtDicomDate(date)} ${mods} ${desc}`));
      })));
    } catch (err) {
      studiesHost.append(h('p.muted', {}, errorText(err)));
    }
  }

  const liveRefresh = debounce(() => { if (!zoom) { loadSeries(); loadNews2(); loadHead(); } }, 5000);
  const unsubscribe = subscribe((m) => {
    if ((m.type === 'vitals' && m.patient_id === patientId) || m.type === 'resync') liveRefresh();
    if (m.type === 'event' && m.event_type === 'alert' && m.patient_id === patientId) loadAlerts();
  });
  await Promise.all([loadSeries(), loadNews2(), loadHead(), loadAlerts(), loadConsultations(), loadStudies()]);
  return () => { unsubscribe(); for (const { chart } of charts) chart.destroy(); news2Chart.destroy(); };
}
