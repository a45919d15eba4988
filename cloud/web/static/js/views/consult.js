// Tele-consultation (docs/consultations.md, /api/consultations): the county doctor's request with triage and
// the matched experts' score explanations; the expert's queue of offers with an SLA countdown; the report form
// (ICD-10 search, e-prescription lines); the signed report, its verification and its PDF; and, once an expert
// accepted, the video call with the county edge (the call panel served by the video module, docs/video.md).

import { api, errorText, qs } from '../api.js';
import { h, clear, toast, debounce } from '../dom.js';
import { t, tOr, isZh, currentLocale, fmtDateTime, fmtDuration, fmtDicomDate } from '../i18n.js';
import { subscribe } from '../live.js';
import { displayUnit, formatValue } from './ward.js';

const BASE = '/api/consultations';
// The prescription vocabularies the report validator accepts (cloud/consult/report.py).
const ROUTES = ['PO', 'IV', 'IVGTT', 'IM', 'SC', 'SL', 'INH', 'NEB', 'TOP', 'PR', 'OPH', 'OT', 'NAS'];
const FREQUENCIES = ['QD', 'BID', 'TID', 'QID', 'Q4H', 'Q6H', 'Q8H', 'Q12H', 'QN', 'QOD', 'QW', 'PRN', 'STAT'];
const UNITS = ['mg', 'g', 'ug', 'mL', 'IU', 'U', 'mmol', 'mg/kg', 'tablet', 'capsule', 'sachet', 'puff', 'drop',
  'patch', 'ampoule', 'vial'];
const URGENCIES = ['routine', 'urgent', 'emergency'];
const OPEN_STATES = ['draft', 'requested', 'offered', 'accepted', 'in_session', 'report_submitted', 'escalated'];
// Calls run while an expert holds the consultation (cloud/video/participants.py CALL_STATES).
const CALL_STATES = ['accepted', 'in_session'];

const has = (user, role) => user.roles.includes(role);
const select = (options, props = {}) => h('select', props, options.map(([value, label]) => h('option', { value }, label)));

/** A live countdown to `iso` (SLA deadline): amber under 5 minutes, red once past. */
function countdown(iso) {
  const el = h('span.countdown', { dataset: { deadline: iso, testid: 'countdown' } });
  const tick = () => {
    const left = (Date.parse(iso) - Date.now()) / 1000;
    el.textContent = left >= 0 ? fmtDuration(left) : t('consult.overdue', { time: fmtDuration(-left) });
    el.classList.toggle('late', left < 0);
    el.classList.toggle('soon', left >= 0 && left < 300);
  };
  tick();
  const timer = setInterval(() => { if (!el.isConnected) clearInterval(timer); else tick(); }, 1000);
  return el;
}

function stateLabel(state) { return h('span.state', { dataset: { state } }, t(`consult.state.${state}`)); }
function urgencyLabel(urgency) { return h('span.urgency', { dataset: { urgency } }, t(`urgency.${urgency}`)); }

// --- list and queue -----------------------------------------------------------------------------------------

async function renderList(root, { user, navigate }) {
  const queueHost = h('div', { id: 'consult-queue' });
  const listHost = h('div', { id: 'consult-list' });
  root.append(h('div.row', {}, h('h1', {}, t('consult.title')), h('span.spacer'),
    has(user, 'county_doctor') ? h('button', { id: 'consult-new', onclick: () => navigate('#/consult/new') }, t('consult.new')) : null));
  if (has(user, 'expert')) root.append(h('section.panel', {}, h('h2', {}, t('consult.queue')), queueHost));
  root.append(h('section.panel', {}, h('h2', {}, t('consult.list')), listHost));

  async function load() {
    let data;
    try { data = await api(`${BASE}${qs({ limit: 200 })}`); } catch (err) {
      clear(listHost).append(h('p.error', {}, errorText(err))); return;
    }
    clear(listHost);
    if (!data.consultations.length) listHost.append(h('p.muted', {}, t('consult.none')));
    else {
      listHost.append(h('table', {}, h('thead', {}, h('tr', {}, ['consult.created', 'consult.patient', 'consult.state_label',
        'consult.urgency', 'consult.specialty', 'consult.complaint'].map((k) => h('th', {}, t(k))))),
      h('tbody', {}, data.consultations.map((c) => h('tr', { dataset: { consultation: c.consultation_id } },
        h('td', {}, h('a', { href: `#/consult/${c.consultation_id}` }, fmtDateTime(c.created_at))),
        h('td', {}, c.patient_id), h('td', {}, stateLabel(c.state)), h('td', {}, urgencyLabel(c.urgency)),
        h('td', {}, c.specialty || '—'), h('td', {}, c.chief_complaint))))));
    }
    if (has(user, 'expert')) {
      const offered = data.consultations.filter((c) => c.state === 'offered');
      const details = await Promise.all(offered.map((c) => api(`${BASE}/${c.consultation_id}`).catch(() => null)));
      clear(queueHost);
      const mine = details.filter((d) => d && d.actions.includes('accept'));
      if (!mine.length) { queueHost.append(h('p.muted', {}, t('consult.queue_empty'))); return; }
      queueHost.append(h('div.alarm-list', {}, mine.map((d) => h('article.alarm-card', { dataset: { offer: d.consultation_id } },
        h('div.row', {}, urgencyLabel(d.urgency), h('strong', {}, d.chief_complaint || d.patient_id),
          h('span.spacer'), t('consult.respond_within'), ' ', d.deadlines.respond_by ? countdown(d.deadlines.respond_by) : '—'),
        h('div.muted', {}, `${d.patient_id} · ${d.specialty || ''} · ${fmtDateTime(d.requested_at)}`),
        h('div.actions', {},
          h('button', { dataset: { action: 'accept' }, async onclick() { await act(d.consultation_id, 'accept'); navigate(`#/consult/${d.consultation_id}`); } }, t('consult.accept')),
          h('button.secondary', { dataset: { action: 'decline' }, async onclick() { await act(d.consultation_id, 'decline', { reason: '' }); load(); } }, t('consult.decline')),
          h('a', { href: `#/consult/${d.consultation_id}` }, t('consult.open')))))));
    }
  }
  const refresh = debounce(load, 500);
  const unsubscribe = subscribe((m) => { if (m.type === 'resync' || (m.type === 'event' && String(m.event_type).startsWith('consultation'))) refresh(); });
  const timer = setInterval(load, 20000);
  await load();
  return () => { unsubscribe(); clearInterval(timer); };
}

async function act(id, action, body = {}) {
  try {
    const result = await api(`${BASE}/${id}/${action}`, { method: 'POST', body });
    toast(t(`consult.done.${action}`));
    return result;
  } catch (err) {
    toast(errorText(err), { error: true });
    throw err;
  }
}

// --- new request ------------------------------------------------------------------------------------------------

async function renderNew(root, { navigate }) {
  const [ward, specialties] = await Promise.all([api('/api/ward/overview'), api('/api/specialties').catch(() => ({ specialties: [] }))]);
  const patient = select(ward.patients.map((p) => [p.patient_id, `${p.patient_id} · ${[p.ward, p.bed].filter(Boolean).join(' ')}`]),
    { id: 'c-patient', required: true });
  const complaint = h('textarea', { id: 'c-complaint', required: true, maxlength: 2000 });
  const specialty = select([['', '—'], ...specialties.specialties.map((s) => [s.code, isZh() ? s.name_zh : s.name_en])], { id: 'c-specialty' });
  const urgency = select(URGENCIES.map((u) => [u, t(`urgency.${u}`)]), { id: 'c-urgency' });
  const question = h('textarea', { id: 'c-question', maxlength: 4000 });
  const notes = h('textarea', { id: 'c-notes', maxlength: 20000 });
  const triageHost = h('div', { id: 'c-triage' });
  const studiesHost = h('div', { id: 'c-studies' });
  const error = h('p.error');

  async function runTriage() {
    if (!complaint.value.trim()) return;
    try {
      const result = await api('/api/triage', { method: 'POST', body: { text: complaint.value } });
      clear(triageHost).append(h('div.signature', {},
        h('div', {}, `${t('consult.triage.urgency')}: `, urgencyLabel(result.urgency),
          result.red_flags.length ? ` · ${t('consult.triage.red_flags')}: ${result.red_flags.map((f) => f.label).join(', ')}` : ''),
        h('div', {}, `${t('consult.triage.specialties')}: ${result.specialties.map((s) => `${s.specialty} ${(s.score * 100).toFixed(0)}%`).join(', ') || '—'}`),
        result.follow_up.length ? h('ul', {}, result.follow_up.map((q) => h('li', {}, q))) : null));
      if (result.specialties.length && !specialty.value) specialty.value = result.specialties[0].specialty;
      if (URGENCIES.indexOf(result.urgency) > URGENCIES.indexOf(urgency.value)) urgency.value = result.urgency;
    } catch (err) { clear(triageHost).append(h('p.muted', {}, errorText(err))); }
  }

  let studiesRequest = 0;
  async function loadStudies() {
    const id = ++studiesRequest;
    const res = await fetch(`/dicomweb/studies${qs({ PatientID: patient.value })}`, { headers: { Accept: 'application/dicom+json' } });
    const studies = res.ok ? await res.json() : [];
    if (id !== studiesRequest) return; // the patient changed meanwhile
    clear(studiesHost);
    if (!studies.length) { studiesHost.append(h('p.muted', {}, t('viewer.no_studies'))); return; }
    for (const s of studies) {
      const uid = s['0020000D'].Value[0];
      const label = `${fmtDicomDate((s['00080020'] || {}).Value?.[0])} ${((s['00080061'] || {}).Value || []).join('/')} ${(s['00081030'] || {}).Value?.[0] || ''}`;
      studiesHost.append(h('label', {}, h('input', { type: 'checkbox', value: uid, checked: true, dataset: { study: uid } }), ' ', label));
    }
  }
  patient.addEventListener('change', loadStudies);

  const form = h('form.panel', {
    id: 'consult-form',
    async onsubmit(event) {
      event.preventDefault();
      error.textContent = '';
      const studies = [...studiesHost.querySelectorAll('input[type=checkbox]:checked')].map((i) => i.value);
      try {
        const created = await api(BASE, { method: 'POST', body: {
          patient_id: patient.value, chief_complaint: complaint.value, urgency: urgency.value,
          specialty: specialty.value || null, question: question.value, clinical_notes: notes.value,
          language: isZh() ? 'zh' : 'en', studies } });
        navigate(`#/consult/${created.consultation_id}`);
      } catch (err) { error.textContent = errorText(err); }
    } },
  h('label', { for: 'c-patient' }, t('consult.patient')), patient,
  h('label', { for: 'c-complaint' }, t('consult.complaint')), complaint,
  h('div.row', {}, h('button.secondary', { type: 'button', id: 'c-run-triage', onclick: runTriage }, t('consult.triage.run'))),
  triageHost,
  h('div.row', {}, h('div', {}, h('label', { for: 'c-specialty' }, t('consult.specialty')), specialty),
    h('div', {}, h('label', { for: 'c-urgency' }, t('consult.urgency')), urgency)),
  h('label', { for: 'c-question' }, t('consult.question')), question,
  h('label', { for: 'c-notes' }, t('consult.notes')), notes,
  h('h3', {}, t('consult.attach_studies')), studiesHost,
  h('p.muted', {}, t('consult.snapshot_note')),
  h('div.row', {}, h('button', { type: 'submit', id: 'c-save' }, t('consult.save_draft'))), error);
  complaint.addEventListener('blur', runTriage);
  root.append(h('h1', {}, t('consult.new')), form);
  if (patient.value) await loadStudies();
}

// --- one consultation ------------------------------------------------------------------------------------------------

function matchesTable(matches, offers) {
  const names = Object.fromEntries(offers.map((o) => [o.expert_id, o.expert_name]));
  const factorNames = matches.candidates.length ? Object.keys(matches.candidates[0].factors) : [];
  return h('div', {},
    h('p.muted', {}, t('consult.matches.summary', { experts: matches.experts, method: matches.method }),
      ' ', Object.entries(matches.remaining).map(([f, n]) => `${tOr(`filter.${f}`, f)} ${n}`).join(' → ')),
    matches.candidates.length ? h('table.factors', { id: 'matches' },
      h('thead', {}, h('tr', {}, h('th', {}, '#'), h('th', {}, t('consult.expert')), h('th', {}, t('consult.score')),
        factorNames.map((f) => h('th', {}, tOr(`factor.${f}`, f))))),
      h('tbody', {}, matches.candidates.map((c) => h('tr', { dataset: { expert: c.expert_id } },
        h('td', {}, String(c.rank)), h('td', { title: c.expert_id }, c.expert_name || names[c.expert_id] || c.expert_id.slice(0, 8)),
        h('td', {}, c.score.toFixed(3)),
        factorNames.map((f) => h('td', { title: `${t('consult.value')} ${c.factors[f].value.toFixed(2)} × ${t('consult.weight')} ${c.factors[f].weight}` },
          c.factors[f].contribution.toFixed(3))))))) : h('p.muted', {}, t('consult.matches.none')));
}

function reportView(report, verification, id) {
  const b = report.body;
  return h('div', { id: 'signed-report' },
    h('h3', {}, t('report.findings')), h('p', {}, b.findings),
    h('h3', {}, t('report.diagnoses')),
    h('ul', {}, (b.diagnoses || []).map((d) => h('li', {}, `${d.code} ${isZh() ? (d.name_zh || '') : (d.name_en || '')}${d.primary ? ` (${t('report.primary')})` : ''}`))),
    b.recommendations ? [h('h3', {}, t('report.recommendations')), h('p', {}, b.recommendations)] : null,
    (b.prescriptions || []).length ? [h('h3', {}, t('report.prescriptions')), h('table', {},
      h('tbody', {}, b.prescriptions.map((p) => h('tr', {}, h('td', {}, p.drug), h('td', {}, `${p.dose} ${p.unit}`),
        h('td', {}, p.route), h('td', {}, p.frequency), h('td', {}, t('report.days', { days: p.duration_days })), h('td', {}, p.notes || '')))))] : null,
    b.follow_up_date ? h('p', {}, `${t('report.follow_up')}: ${b.follow_up_date}`) : null,
    h('div.signature', {},
      h('div', {}, `${t('report.signed_by', { name: b.expert_name || '', time: fmtDateTime(report.signed_at) })}`),
      h('div.mono', {}, `${report.algorithm} · ${t('report.fingerprint')} ${report.key_fingerprint}`),
      verification ? h('div', { class: verification.valid ? 'valid' : 'invalid', id: 'report-verify' },
        verification.valid ? t('report.valid') : t('report.invalid', { reason: verification.reason })) : null,
      h('a', { href: `${BASE}/${id}/report.pdf`, id: 'report-pdf', download: `consultation-${id}.pdf` }, t('report.pdf'))));
}

function reportForm(id, onDone) {
  const findings = h('textarea', { id: 'r-findings', required: true });
  const recommendations = h('textarea', { id: 'r-recommendations' });
  const followUp = h('input', { id: 'r-follow-up', type: 'date' });
  const diagnoses = [];
  const diagnosisList = h('ul', { id: 'r-diagnoses' });
  const search = h('input', { id: 'r-icd-search', placeholder: t('report.icd_search'), autocomplete: 'off' });
  const results = h('div.icd-results', { id: 'r-icd-results', hidden: true });
  const lines = h('div', { id: 'r-rx' });
  const error = h('p.error');

  function drawDiagnoses() {
    clear(diagnosisList);
    diagnoses.forEach((d, i) => diagnosisList.append(h('li', { dataset: { code: d.code } },
      h('label', {}, h('input', { type: 'radio', name: 'primary', checked: d.primary, onchange() { diagnoses.forEach((x, j) => { x.primary = j === i; }); } }),
        ` ${d.code} ${d.name} `, h('button.link', { type: 'button', onclick() { diagnoses.splice(i, 1); drawDiagnoses(); } }, '✕')))));
  }
  const runSearch = debounce(async () => {
    const q = search.value.trim();
    clear(results);
    results.hidden = !q;
    if (!q) return;
    const data = await api(`/api/icd10${qs({ q, limit: 10 })}`);
    for (const r of data.results) {
      results.append(h('button', { type: 'button', dataset: { code: r.code }, onclick() {
        if (!diagnoses.some((d) => d.code === r.code)) diagnoses.push({ code: r.code, name: isZh() ? r.name_zh : r.name_en, primary: !diagnoses.length });
        search.value = ''; results.hidden = true; drawDiagnoses();
      } }, `${r.code} ${isZh() ? r.name_zh : r.name_en}`));
    }
  }, 250);
  search.addEventListener('input', runSearch);

  function addLine() {
    const row = h('div.rx-line', { dataset: { rx: '' } },
      h('input', { placeholder: t('rx.drug'), name: 'drug', required: true }),
      h('input', { placeholder: t('rx.dose'), name: 'dose', required: true, inputmode: 'decimal' }),
      select(UNITS.map((u) => [u, u]), { name: 'unit' }),
      select(ROUTES.map((r) => [r, `${r} ${t(`rx.route.${r}`)}`]), { name: 'route' }),
      select(FREQUENCIES.map((f) => [f, `${f} ${t(`rx.freq.${f}`)}`]), { name: 'frequency' }),
      h('input', { type: 'number', name: 'duration_days', min: 1, max: 180, value: 7, title: t('rx.days') }),
      h('button.link', { type: 'button', onclick() { row.remove(); } }, '✕'));
    lines.append(row);
  }

  return h('form.panel', { id: 'report-form', async onsubmit(event) {
    event.preventDefault();
    error.textContent = '';
    const prescriptions = [...lines.querySelectorAll('[data-rx]')].map((row) => {
      const v = (n) => row.querySelector(`[name=${n}]`).value;
      return { drug: v('drug'), dose: v('dose'), unit: v('unit'), route: v('route'), frequency: v('frequency'),
        duration_days: Number(v('duration_days')), notes: '' };
    });
    try {
      await api(`${BASE}/${id}/report`, { method: 'POST', body: {
        findings: findings.value, recommendations: recommendations.value, follow_up_date: followUp.value || null,
        diagnoses: diagnoses.map((d) => ({ code: d.code, primary: d.primary })), prescriptions } });
      toast(t('consult.done.submit_report'));
      onDone();
    } catch (err) { error.textContent = errorText(err); }
  } },
  h('h2', {}, t('report.title')),
  h('label', { for: 'r-findings' }, t('report.findings')), findings,
  h('label', { for: 'r-icd-search' }, t('report.diagnoses')), search, results, diagnosisList,
  h('label', { for: 'r-recommendations' }, t('report.recommendations')), recommendations,
  h('h3', {}, t('report.prescriptions')), lines,
  h('button.secondary', { type: 'button', id: 'r-add-rx', onclick: addLine }, t('rx.add')),
  h('label', { for: 'r-follow-up' }, t('report.follow_up')), followUp,
  h('div.row', {}, h('button', { type: 'submit', id: 'r-submit' }, t('report.sign_submit'))), error);
}

// Only the consultation's participants may join its call: the site's county doctors and the assigned expert.
function isCallParticipant(user, c) {
  return (has(user, 'county_doctor') && user.site_id === c.site_id)
    || (has(user, 'expert') && c.assigned_expert_id === user.user_id);
}

// The call panel lives outside the detail that re-renders on every change, so a call survives a refresh.
function callSlot(root, id) {
  const inner = h('div');
  const section = h('section.panel', { id: 'call-host', hidden: true }, h('h2', {}, t('consult.video')), inner);
  root.append(section);
  let panel = null;
  let mounting = null;
  return {
    async show(wanted) {
      if (wanted && !panel && !mounting) {
        mounting = import('/video/call.js').then(({ mountCallPanel }) => {
          panel = mountCallPanel(inner, { consultationId: id, lang: currentLocale() });
          section.hidden = false;
        }).catch((err) => { inner.replaceChildren(h('p.error', {}, errorText(err))); section.hidden = false; })
          .finally(() => { mounting = null; });
        await mounting;
      } else if (!wanted && panel) {
        this.close();
      }
    },
    close() {
      if (panel) panel.destroy();
      panel = null;
      section.hidden = true;
    },
  };
}

async function renderDetail(root, { user, navigate }, id) {
  const host = h('div', { id: 'consult-detail' });
  root.append(host);
  const call = callSlot(root, id);

  async function load() {
    let c;
    try { c = await api(`${BASE}/${id}`); } catch (err) { clear(host).append(h('p.error', {}, errorText(err))); return; }
    clear(host);
    const buttons = [];
    const can = (a) => c.actions.includes(a);
    if (can('submit')) buttons.push(h('button', { id: 'c-submit', async onclick() { await act(id, 'submit'); load(); } }, t('consult.submit')));
    if (can('accept')) buttons.push(h('button', { id: 'c-accept', async onclick() { await act(id, 'accept'); load(); } }, t('consult.accept')));
    if (can('decline')) buttons.push(h('button.secondary', { id: 'c-decline', async onclick() { await act(id, 'decline', { reason: '' }); navigate('#/consult'); } }, t('consult.decline')));
    if (can('start_session')) buttons.push(h('button', { id: 'c-session', async onclick() { await act(id, 'session'); load(); } }, t('consult.start_session')));
    if (can('close')) buttons.push(h('button', { id: 'c-close', async onclick() { await act(id, 'close', { rating: 5 }); load(); } }, t('consult.close')));
    if (can('cancel')) buttons.push(h('button.danger', { id: 'c-cancel', async onclick() { await act(id, 'cancel', { reason: '' }); load(); } }, t('consult.cancel')));

    host.append(
      h('div.row', {}, h('h1', {}, t('consult.detail', { patient: c.patient_id })), stateLabel(c.state), urgencyLabel(c.urgency),
        h('span.spacer'), buttons),
      h('div.grid2', {},
        h('section.panel', {},
          h('h2', {}, t('consult.request')),
          h('p', {}, h('strong', {}, t('consult.complaint')), ': ', c.chief_complaint),
          c.question ? h('p', {}, h('strong', {}, t('consult.question')), ': ', c.question) : null,
          c.clinical_notes ? h('p', {}, h('strong', {}, t('consult.notes')), ': ', c.clinical_notes) : null,
          h('p.muted', {}, `${t('consult.specialty')}: ${c.specialty || '—'} · ${t('consult.created')}: ${fmtDateTime(c.created_at)}`),
          c.deadlines.respond_by && ['offered', 'requested'].includes(c.state)
            ? h('p', {}, t('consult.respond_within'), ' ', countdown(c.deadlines.respond_by)) : null,
          c.deadlines.overall_by && OPEN_STATES.includes(c.state) && c.state !== 'draft'
            ? h('p', {}, t('consult.report_within'), ' ', countdown(c.deadlines.overall_by)) : null,
          c.news2 ? h('p', {}, `NEWS2 ${c.news2.total} (${t(`risk.${c.news2.risk}`)})`) : null,
          c.vitals_snapshot ? h('table', {}, h('tbody', {}, Object.entries(c.vitals_snapshot.vitals || c.vitals_snapshot).map(([k, v]) =>
            h('tr', {}, h('td', {}, t(`kind.${v && v.kind ? v.kind : k}`)), h('td', {}, v && typeof v === 'object' ? `${formatValue(v.kind || k, v.value)} ${displayUnit(v.unit)}` : String(v)))))) : null,
          h('h3', {}, t('consult.attachments')),
          c.attachments.length ? h('ul', {}, c.attachments.map((a) => h('li', {},
            h('a', { href: `#/viewer/${a.study_instance_uid}` }, `${a.modalities.join('/') || 'DICOM'} · ${a.instances_in_cloud} ${t('viewer.images')}`)))) : h('p.muted', {}, '—')),
        h('section.panel', {}, h('h2', {}, t('consult.offers')),
          c.offers.length ? h('table', { id: 'offers' }, h('tbody', {}, c.offers.map((o) => h('tr', {},
            h('td', {}, o.expert_name), h('td', {}, o.score === null ? '' : o.score.toFixed(3)), h('td', {}, t(`offer.${o.outcome}`)),
            h('td', {}, fmtDateTime(o.offered_at)))))) : h('p.muted', {}, '—'),
          h('div', { id: 'matches-host' }),
          h('h3', {}, t('consult.timeline')),
          h('ol.timeline', {}, c.timeline.map((e) => h('li', {}, `${fmtDateTime(e.at)} · ${tOr(`consult.event.${e.event}`, e.event)}${e.to_state ? ` → ${tOr(`consult.state.${e.to_state}`, e.to_state)}` : ''} · ${e.actor_name || t(`consult.role.${e.actor_role}`)}`))))));

    if ((has(user, 'county_doctor') || has(user, 'admin')) && ['draft', 'requested', 'offered', 'escalated'].includes(c.state)) {
      const matchesHost = host.querySelector('#matches-host');
      matchesHost.append(h('h3', {}, t('consult.matches.title')));
      try { matchesHost.append(matchesTable(await api(`${BASE}/${id}/matches`), c.offers)); } catch (err) { matchesHost.append(h('p.muted', {}, errorText(err))); }
    }
    if (c.has_report) {
      const [report, verification] = await Promise.all([api(`${BASE}/${id}/report`), api(`${BASE}/${id}/report/verify`).catch(() => null)]);
      host.append(h('section.panel', {}, h('h2', {}, t('report.signed')), reportView(report, verification, id)));
    } else if (can('submit_report')) {
      host.append(reportForm(id, load));
    }
    await call.show(CALL_STATES.includes(c.state) && isCallParticipant(user, c));
  }
  const refresh = debounce(load, 500);
  const unsubscribe = subscribe((m) => { if (m.type === 'resync') refresh(); });
  await load();
  return () => { unsubscribe(); call.close(); };
}

export async function render(root, ctx, param) {
  if (param === 'new') return renderNew(root, ctx);
  if (param) return renderDetail(root, ctx, param);
  return renderList(root, ctx);
}
