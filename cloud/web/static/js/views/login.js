// Login: POST /api/auth/login sets the HttpOnly session cookie; the body's user drives the navigation.

import { api, ApiError } from '../api.js';
import { h } from '../dom.js';
import { t, currentLocale, setLocale } from '../i18n.js';

export async function render(root, { onLogin }) {
  const error = h('p.error', { role: 'alert' });
  const username = h('input', { id: 'username', name: 'username', autocomplete: 'username', required: true });
  const password = h('input', { id: 'password', name: 'password', type: 'password', autocomplete: 'current-password',
    required: true });
  const submit = h('button', { type: 'submit', id: 'login-submit' }, t('login.submit'));
  const form = h('form.panel.login', {
    async onsubmit(event) {
      event.preventDefault();
      error.textContent = '';
      submit.disabled = true;
      try {
        const result = await api('/api/auth/login', { method: 'POST',
          body: { username: username.value.trim(), password: password.value } });
        await onLogin(result.user);
      } catch (err) {
        if (err instanceof ApiError && err.status === 429) error.textContent = t('login.throttled');
        else if (err instanceof ApiError && err.status === 401) error.textContent = t('login.failed');
        else error.textContent = t('error.network');
        submit.disabled = false;
      }
    },
  },
  h('h1', {}, h('img', { src: '/static/favicon.svg', alt: '', width: 28, height: 28 }), t('app.name')),
  h('p.muted', {}, t('login.subtitle')),
  h('label', { for: 'username' }, t('login.username')), username,
  h('label', { for: 'password' }, t('login.password')), password,
  submit, error,
  h('div.locale', {}, h('button.link', { type: 'button', id: 'login-locale',
    async onclick() { await setLocale(currentLocale() === 'zh-CN' ? 'en' : 'zh-CN'); location.reload(); } },
  currentLocale() === 'zh-CN' ? 'English' : '中文')));
  root.append(form);
  username.focus();
}
