// Message catalogues (static/i18n/<locale>.json), zh-CN by default, the choice kept in localStorage.

export const LOCALES = ['zh-CN', 'en'];
const STORAGE_KEY = 'telemed.locale';
let locale = 'zh-CN';
let messages = {};

export function currentLocale() { return locale; }
export function isZh() { return locale === 'zh-CN'; }

export async function initI18n() {
  const stored = localStorage.getItem(STORAGE_KEY);
  locale = LOCALES.includes(stored) ? stored : 'zh-CN';
  const res = await fetch(`/static/i18n/${locale}.json`, { credentials: 'same-origin' });
  messages = await res.json();
  document.documentElement.lang = locale;
  document.title = t('app.name');
}

export async function setLocale(next) {
  if (!LOCALES.includes(next)) return;
  localStorage.setItem(STORAGE_KEY, next);
  await initI18n();
}

/** The message for `key` with {name} placeholders filled; the key itself when missing. */
export function t(key, params = {}) {
  const text = messages[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, name) => (params[name] ?? `{${name}}`));
}

/** Whether the catalogue has `key`; `tOr` falls back to `fallback` for keys it does not know. */
export function has(key) { return Object.prototype.hasOwnProperty.call(messages, key); }
export function tOr(key, fallback, params = {}) { return has(key) ? t(key, params) : fallback; }

/** Fill every [data-i18n] element under `root` with its message. */
export function translateStatic(root = document) {
  for (const el of root.querySelectorAll('[data-i18n]')) el.textContent = t(el.dataset.i18n);
}

const tz = 'Asia/Shanghai';
export function fmtDateTime(iso) {
  if (!iso) return '—';
  return new Date(iso).toLocaleString(locale, { timeZone: tz, hour12: false, year: 'numeric', month: '2-digit',
    day: '2-digit', hour: '2-digit', minute: '2-digit' });
}
export function fmtTime(iso) {
  if (!iso) return '—';
  return new Date(iso).toLocaleTimeString(locale, { timeZone: tz, hour12: false, hour: '2-digit', minute: '2-digit',
    second: '2-digit' });
}
export function fmtDate(iso) {
  if (!iso) return '—';
  return new Date(iso).toLocaleDateString(locale, { timeZone: tz, year: 'numeric', month: '2-digit', day: '2-digit' });
}
export function fmtDuration(seconds) {
  if (seconds === null || seconds === undefined) return '—';
  const s = Math.max(0, Math.round(Math.abs(seconds)));
  const text = s >= 3600 ? `${Math.floor(s / 3600)}:${String(Math.floor(s / 60) % 60).padStart(2, '0')}:${String(s % 60).padStart(2, '0')}`
    : `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
  return seconds < 0 ? `-${text}` : text;
}
/** A DICOM DA value (YYYYMMDD) for display. */
export function fmtDicomDate(value) {
  if (!value || value.length !== 8) return value || '—';
  return `${value.slice(0, 4)}-${value.slice(4, 6)}-${value.slice(6, 8)}`;
}
