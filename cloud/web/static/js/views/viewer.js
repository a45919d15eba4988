// The DICOM viewer over our DICOMweb service: a study and series browser (QIDO-RS, series thumbnails), slice
// scrolling (wheel, arrow keys, slider), window/level presets and mouse drag (the server renders each slice
// with `window=center,width`, PS3.18 8.3.5.1.1), zoom and pan, and cine for multi-frame ultrasound.

import { h, clear, debounce } from '../dom.js';
import { t, fmtDicomDate } from '../i18n.js';
import { qs } from '../api.js';

const ROOT = '/dicomweb';
// Window presets in HU (centre, width).
export const PRESETS = [
  ['lung', -600, 1500], ['mediastinum', 50, 350], ['bone', 400, 1800], ['brain', 40, 80],
];
const CACHE_SIZE = 300;
const PREFETCH = 3;

const value = (item, tag, i = 0) => (item[tag] && item[tag].Value ? item[tag].Value[i] : undefined);
// PN component groups (PS3.5 6.2.1): family^given; ideographic names are written without a space.
const personName = (pn) => (!pn ? '' : pn.Ideographic ? pn.Ideographic.replaceAll('^', '')
  : (pn.Alphabetic || '').split('^').filter(Boolean).join(' '));

async function dicomJson(path) {
  const res = await fetch(`${ROOT}${path}`, { headers: { Accept: 'application/dicom+json' }, credentials: 'same-origin' });
  if (!res.ok) throw new Error(`${res.status} ${res.statusText}`);
  return res.json();
}

/** Rendered images as object URLs, least recently used evicted. */
class ImageCache {
  constructor(size) { this.size = size; this.map = new Map(); }
  get(url, accept) {
    const key = `${accept} ${url}`;
    let entry = this.map.get(key);
    if (entry) { this.map.delete(key); this.map.set(key, entry); return entry; }
    entry = fetch(url, { headers: { Accept: accept }, credentials: 'same-origin' }).then(async (res) => {
      if (!res.ok) throw new Error(`${res.status} ${res.statusText}`);
      return URL.createObjectURL(await res.blob());
    });
    entry.catch(() => this.map.delete(key));
    this.map.set(key, entry);
    while (this.map.size > this.size) {
      const [oldKey, old] = this.map.entries().next().value;
      this.map.delete(oldKey);
      old.then((u) => URL.revokeObjectURL(u)).catch(() => {});
    }
    return entry;
  }
  clear() { for (const e of this.map.values()) e.then((u) => URL.revokeObjectURL(u)).catch(() => {}); this.map.clear(); }
}

export async function render(root, ctx, studyParam) {
  const cache = new ImageCache(CACHE_SIZE);
  const state = { study: null, series: null, instances: [], index: 0, frame: 0, frames: 1, window: null, preset: 'default',
    zoom: 1, fit: 1, panX: 0, panY: 0, playing: null, frameTime: 40, requestId: 0, greyscale: true };

  // --- layout -------------------------------------------------------------------------------------------------------
  const patientFilter = h('input', { id: 'v-patient', placeholder: t('viewer.patient_id') });
  const fromDate = h('input', { id: 'v-from', type: 'date' });
  const toDate = h('input', { id: 'v-to', type: 'date' });
  const studyList = h('div', { id: 'v-studies' });
  const seriesList = h('div.series-list', { id: 'v-series' });
  const img = h('img', { id: 'v-image', alt: '', draggable: false });
  const canvas = h('div.canvas', { id: 'v-canvas', tabindex: 0 }, img);
  const tl = h('div.overlay.tl'); const tr = h('div.overlay.tr'); const bl = h('div.overlay.bl', { id: 'v-wl' });
  const br = h('div.overlay.br');
  canvas.append(tl, tr, bl, br);
  const slider = h('input', { type: 'range', id: 'v-slider', min: 0, max: 0, value: 0 });
  const presetButtons = [['default', null, null], ...PRESETS].map(([name, c, w]) => h('button', {
    dataset: { preset: name }, class: name === 'default' ? 'active' : '',
    onclick() { applyPreset(name, c, w); } }, t(`viewer.preset.${name}`)));
  const cineButton = h('button', { id: 'v-cine', hidden: true, onclick: () => toggleCine() }, t('viewer.play'));
  const toolbar = h('div.toolbar', {}, presetButtons,
    h('button', { id: 'v-zoom-in', onclick: () => zoomBy(1.25) }, '+'),
    h('button', { id: 'v-zoom-out', onclick: () => zoomBy(0.8) }, '−'),
    h('button', { id: 'v-reset', onclick: resetView }, t('viewer.reset')),
    slider, cineButton, h('span.muted', { id: 'v-status' }));
  root.append(h('div.viewer', {},
    h('aside.browser', {},
      h('div.panel.filters', {}, patientFilter, h('label', { for: 'v-from' }, t('viewer.date_range')), fromDate, toDate,
        h('div.row', {}, h('button', { id: 'v-search', onclick: loadStudies }, t('viewer.search')))),
      studyList, seriesList),
    h('section.stage', {}, toolbar, canvas)));

  const status = (text) => { root.querySelector('#v-status').textContent = text; };

  // --- browser ------------------------------------------------------------------------------------------------------
  async function loadStudies() {
    clear(studyList);
    const range = fromDate.value || toDate.value
      ? `${fromDate.value.replaceAll('-', '')}-${toDate.value.replaceAll('-', '')}` : '';
    let studies;
    try {
      studies = await dicomJson(`/studies${qs({ PatientID: patientFilter.value.trim(), StudyDate: range, limit: 100,
        includefield: '00081030' })}`);
    } catch (err) { studyList.append(h('p.error', {}, err.message)); return; }
    if (!studies.length) studyList.append(h('p.muted', {}, t('viewer.no_studies')));
    for (const s of studies) {
      const uid = value(s, '0020000D');
      studyList.append(h('div.study', { dataset: { study: uid }, onclick: () => openStudy(uid) },
        h('div', {}, h('strong', {}, value(s, '00100020') || ''), ' ', personName(value(s, '00100010'))),
        h('div.muted', {}, `${fmtDicomDate(value(s, '00080020'))} · ${(s['00080061'] && s['00080061'].Value || []).join('/')}`
          + ` · ${value(s, '00201208') ?? '?'} ${t('viewer.images')}`),
        h('div', {}, value(s, '00081030') || '')));
    }
  }

  async function openStudy(uid) {
    state.study = uid;
    for (const el of studyList.children) el.classList.toggle('active', el.dataset.study === uid);
    clear(seriesList);
    let series;
    try { series = await dicomJson(`/studies/${uid}/series`); } catch (err) { seriesList.append(h('p.error', {}, err.message)); return; }
    for (const se of series) {
      const seUid = value(se, '0020000E');
      seriesList.append(h('div.series', { dataset: { series: seUid }, onclick: () => openSeries(seUid) },
        h('img', { src: `${ROOT}/studies/${uid}/series/${seUid}/thumbnail`, alt: '', loading: 'lazy' }),
        h('div', {}, `${value(se, '00080060') || ''} #${value(se, '00200011') ?? ''} (${value(se, '00201209') ?? '?'})`),
        h('div', {}, value(se, '0008103E') || '')));
    }
    if (series.length) await openSeries(value(series[0], '0020000E'));
  }

  async function openSeries(uid) {
    stopCine();
    state.series = uid;
    for (const el of seriesList.children) el.classList.toggle('active', el.dataset.series === uid);
    const instances = await dicomJson(`/studies/${state.study}/series/${uid}/instances${qs({
      includefield: '00281050,00281051,00181063,00280004,00100020,00100010,00080020,0008103E,00081030' })}`);
    state.instances = instances;
    state.index = Math.floor(instances.length / 2);
    state.frame = 0;
    state.frames = Number(value(instances[0], '00280008') || 1);
    state.frameTime = Number(value(instances[0], '00181063') || 40);
    state.preset = 'default';
    state.window = null;
    // Windowing applies to greyscale images only (PS3.3 C.11.2); colour ultrasound is shown as acquired.
    const greyscale = String(value(instances[0], '00280004') || 'MONOCHROME2').startsWith('MONOCHROME');
    state.greyscale = greyscale;
    for (const b of presetButtons) {
      b.classList.toggle('active', b.dataset.preset === 'default');
      b.hidden = !greyscale;
    }
    const multi = state.frames > 1;
    cineButton.hidden = !multi;
    slider.max = String((multi ? state.frames : instances.length) - 1);
    const first = instances[0];
    tl.textContent = [value(first, '00100020'), personName(value(first, '00100010')), fmtDicomDate(value(first, '00080020'))]
      .filter(Boolean).join('  ');
    resetView();
    await show();
    if (multi) toggleCine();
  }

  // --- display -----------------------------------------------------------------------------------------------------------
  function currentWindow() {
    if (state.window) return state.window;
    const inst = state.instances[state.index];
    const c = Number(value(inst, '00281050')); const w = Number(value(inst, '00281051'));
    return Number.isFinite(c) && Number.isFinite(w) && w > 0 ? [c, w] : null;
  }

  function urlFor(index, frame) {
    const inst = state.instances[index];
    const sop = value(inst, '00080018');
    const base = `${ROOT}/studies/${state.study}/series/${state.series}/instances/${sop}/frames/${frame + 1}/rendered`;
    return state.window ? `${base}?window=${state.window[0]},${state.window[1]}` : base;
  }

  function accept() {
    // Cine loops of colour ultrasound play as JPEG; greyscale slices stay lossless for reading.
    return state.frames > 1 ? 'image/jpeg' : 'image/png';
  }

  async function show() {
    if (!state.instances.length) return;
    const id = ++state.requestId;
    const url = urlFor(state.index, state.frame);
    if (!state.playing) status(t('viewer.loading'));
    try {
      const objectUrl = await cache.get(url, accept());
      if (id !== state.requestId) return; // a newer slice or window was asked for meanwhile
      img.src = objectUrl;
      img.dataset.src = url;
      await img.decode().catch(() => {});
      if (id !== state.requestId) return;
      if (!img.dataset.fitted) { fitToCanvas(); img.dataset.fitted = '1'; }
      img.dataset.loaded = 'true';
      status('');
    } catch (err) {
      status(err.message);
    }
    overlays();
    prefetch();
  }

  function prefetch() {
    if (state.frames > 1) {
      for (let f = 1; f <= PREFETCH; f++) cache.get(urlFor(state.index, (state.frame + f) % state.frames), accept());
      return;
    }
    for (let d = 1; d <= PREFETCH; d++) {
      for (const i of [state.index + d, state.index - d]) if (i >= 0 && i < state.instances.length) cache.get(urlFor(i, 0), accept());
    }
  }

  function overlays() {
    const inst = state.instances[state.index];
    const wl = currentWindow();
    bl.textContent = wl ? `W ${Math.round(wl[1])}  L ${Math.round(wl[0])}${state.preset !== 'default' ? `  (${t(`viewer.preset.${state.preset}`)})` : ''}` : '';
    const position = state.frames > 1 ? `${t('viewer.frame')} ${state.frame + 1}/${state.frames}`
      : `${t('viewer.image')} ${state.index + 1}/${state.instances.length}`;
    tr.textContent = `${value(inst, '0008103E') || ''}\n${position}`;
    br.textContent = `${Math.round(state.zoom * 100)}%`;
    slider.value = String(state.frames > 1 ? state.frame : state.index);
  }

  function transform() {
    img.style.transform = `translate(-50%, -50%) translate(${state.panX}px, ${state.panY}px) scale(${state.zoom})`;
    br.textContent = `${Math.round(state.zoom * 100)}%`;
  }

  function fitToCanvas() {
    const width = img.naturalWidth || 512; const height = img.naturalHeight || 512;
    state.fit = Math.min(canvas.clientWidth / width, canvas.clientHeight / height) || 1;
    state.zoom = state.fit;
    transform();
  }

  function resetView() {
    state.panX = 0; state.panY = 0;
    delete img.dataset.fitted;
    if (img.naturalWidth) { fitToCanvas(); img.dataset.fitted = '1'; }
  }

  function zoomBy(factor) { state.zoom = Math.min(20, Math.max(0.05, state.zoom * factor)); transform(); }

  function step(delta) {
    if (state.frames > 1) state.frame = (state.frame + delta + state.frames) % state.frames;
    else state.index = Math.min(state.instances.length - 1, Math.max(0, state.index + delta));
    show();
  }

  function applyPreset(name, c, w) {
    state.preset = name;
    state.window = name === 'default' ? null : [c, w];
    for (const b of presetButtons) b.classList.toggle('active', b.dataset.preset === name);
    show();
  }

  // --- cine ----------------------------------------------------------------------------------------------------------------
  function toggleCine() { if (state.playing) stopCine(); else startCine(); }
  function startCine() {
    if (state.frames < 2) return;
    cineButton.textContent = t('viewer.pause');
    cineButton.classList.add('active');
    state.playing = setInterval(() => step(1), Math.max(20, state.frameTime));
  }
  function stopCine() {
    clearInterval(state.playing);
    state.playing = null;
    cineButton.textContent = t('viewer.play');
    cineButton.classList.remove('active');
  }

  // --- mouse and keys ------------------------------------------------------------------------------------------------------
  const rerender = debounce(show, 60);
  let drag = null;
  canvas.addEventListener('contextmenu', (e) => e.preventDefault());
  canvas.addEventListener('mousedown', (e) => {
    canvas.focus();
    const wl = currentWindow() || [40, 400];
    drag = { x: e.clientX, y: e.clientY, button: e.shiftKey || e.button !== 0 || !state.greyscale ? 'pan' : 'wl', c: wl[0], w: wl[1],
      panX: state.panX, panY: state.panY };
    e.preventDefault();
  });
  window.addEventListener('mousemove', onMove);
  window.addEventListener('mouseup', onUp);
  function onMove(e) {
    if (!drag) return;
    const dx = e.clientX - drag.x; const dy = e.clientY - drag.y;
    if (drag.button === 'pan') { state.panX = drag.panX + dx; state.panY = drag.panY + dy; transform(); return; }
    // Right widens the window, down raises the level: 4 units per pixel suits CT Hounsfield ranges.
    state.window = [Math.round(drag.c + dy * 4), Math.max(1, Math.round(drag.w + dx * 4))];
    state.preset = 'custom';
    for (const b of presetButtons) b.classList.remove('active');
    overlays();
    rerender();
  }
  function onUp() { drag = null; }
  canvas.addEventListener('wheel', (e) => {
    e.preventDefault();
    if (e.ctrlKey) zoomBy(e.deltaY < 0 ? 1.1 : 0.9); else step(e.deltaY > 0 ? 1 : -1);
  }, { passive: false });
  canvas.addEventListener('keydown', (e) => {
    const keys = { ArrowDown: () => step(1), ArrowRight: () => step(1), ArrowUp: () => step(-1), ArrowLeft: () => step(-1),
      PageDown: () => step(10), PageUp: () => step(-10), '+': () => zoomBy(1.25), '=': () => zoomBy(1.25), '-': () => zoomBy(0.8),
      0: resetView, ' ': toggleCine,
      Home: () => { state.index = 0; state.frame = 0; show(); },
      End: () => { state.index = state.instances.length - 1; state.frame = state.frames - 1; show(); } };
    const preset = PRESETS[Number(e.key) - 1];
    if (preset) { applyPreset(...preset); e.preventDefault(); return; }
    if (keys[e.key]) { keys[e.key](); e.preventDefault(); }
  });
  slider.addEventListener('input', () => {
    if (state.frames > 1) state.frame = Number(slider.value); else state.index = Number(slider.value);
    show();
  });
  const observer = new ResizeObserver(() => { if (img.naturalWidth) fitToCanvas(); });
  observer.observe(canvas);

  await loadStudies();
  if (studyParam) await openStudy(studyParam);
  return () => {
    stopCine(); observer.disconnect(); cache.clear();
    window.removeEventListener('mousemove', onMove); window.removeEventListener('mouseup', onUp);
  };
}
