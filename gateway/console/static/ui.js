// Why: the small pieces every view shares — building elements safely (text, never HTML), calling the
// API with the session's CSRF token, page titles and focus, messages.
export const state = { session: null, vkey: null, onSignedOut: () => {} };

export class ApiError extends Error {
  constructor(status, code, message) { super(message); this.status = status; this.code = code; }
}

/** Build an element: attributes, then children (strings become text nodes, never HTML). */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
    else if (k === 'text') node.textContent = v;
    else node.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

export function toast(message) {
  const t = document.getElementById('toast');
  t.textContent = message;
  t.classList.add('show');
  setTimeout(() => t.classList.remove('show'), 3500);
}

export async function api(path, { method = 'GET', json, form, raw = false } = {}) {
  const headers = {};
  let body;
  if (method !== 'GET') headers['X-CSRF-Token'] = state.session ? state.session.csrf_token : '';
  if (json !== undefined) { headers['Content-Type'] = 'application/json'; body = JSON.stringify(json); }
  if (form !== undefined) body = form;
  const r = await fetch(path, { method, headers, body, credentials: 'same-origin' });
  const type = r.headers.get('content-type') || '';
  const data = type.includes('application/json') ? await r.json() : (raw ? await r.blob() : await r.text());
  if (!r.ok) {
    const err = (data && data.error) || {};
    if (r.status === 401 && state.session) { state.session = null; state.onSignedOut(err.message || 'Please sign in again.'); }
    throw new ApiError(r.status, err.code || 'http_error', err.message || `${r.status} ${r.statusText}`);
  }
  return data;
}

export function setPage(title, ...content) {
  const main = document.getElementById('main');
  main.replaceChildren(el('h1', {}, title), ...content);
  document.title = `${title} — consentgate console`;
  main.focus();
}

export function fail(where, err) {
  where.replaceChildren(el('p', { class: 'error', role: 'alert' }, err.message || String(err)));
}

export function verdict(v) {
  return el('span', { class: `verdict-${v}` }, v || '—');
}

export const role = () => (state.session ? state.session.role : null);
export const isOperator = () => state.session && state.session.operator;

export function table(caption, headers, rows) {
  return el('table', {}, el('caption', {}, caption),
    el('thead', {}, el('tr', {}, ...headers.map((h) => el('th', { scope: 'col' }, h)))),
    el('tbody', {}, ...rows.map((r) => el('tr', {}, ...r.map((c) => el('td', {}, c))))));
}

/** A labelled form field: <label for> + control (+ a hint tied by aria-describedby). */
export function field(id, label, input, help) {
  if (help) input.setAttribute('aria-describedby', `${id}-help`);
  return el('div', {}, el('label', { for: id }, label), input,
    help ? el('span', { class: 'hint', id: `${id}-help` }, help) : null);
}
