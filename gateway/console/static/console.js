// Why: the console's shell — sign-in, navigation by role, and the views. Everything the server sends
// is put on the page as text (never as HTML), every URL is relative (works behind a path prefix), and
// the API key is sent once to /console/session and then forgotten: a session cookie carries on.
import { views as registryViews } from './registry.js';
import { views as provenanceViews } from './provenance.js';
import { views as subjectViews } from './subject.js';
import { api, el, fail, field, setPage, state, table, toast, verdict } from './ui.js';
import { hex, openCheckpoint, parseVkey, unhex, verifyConsistency, verifyEntry } from './verify.js';

const main = document.getElementById('main');
state.onSignedOut = (message) => showSignIn(message);

// ---- sign in / out ----

function showSignIn(message) {
  document.getElementById('nav').hidden = true;
  document.getElementById('who').hidden = true;
  const error = el('p', { class: 'error', role: 'alert', id: 'signin-error' }, message || '');
  const key = el('input', { id: 'api-key', name: 'api_key', type: 'password', autocomplete: 'off', required: true,
    'aria-describedby': 'key-help' });
  const form = el('form', { class: 'signin', onsubmit: async (ev) => {
    ev.preventDefault();
    const value = key.value;
    key.value = '';
    try {
      const body = value.trim().startsWith('cgs_') ? { subject_token: value.trim() } : { api_key: value };
      state.session = await api('console/session', { method: 'POST', json: body });
      start();
    } catch (err) {
      error.textContent = err.message;
      key.focus();
    }
  } },
  el('label', { for: 'api-key' }, 'API key or personal access token'), key,
  el('p', { id: 'key-help' }, 'Auditors, registrars and admins: your API key. The people in the registry: the ',
    'personal access token (cgs_…) your registrar gave you. It is exchanged for a session on this gateway and ',
    'is not kept in the browser. The session ends when you sign out, after 30 minutes without use, or after ',
    '12 hours.'),
  el('button', { type: 'submit' }, 'Sign in'), error);
  setPage('Sign in', form);
  key.focus();
}

async function signOut() {
  try { await api('console/session', { method: 'DELETE' }); } catch (err) { /* signed out either way */ }
  state.session = null;
  window.location.hash = '';
  showSignIn('You are signed out.');
}

// ---- navigation ----

const SECTIONS = [
  { hash: '#/decisions', label: 'Decisions', roles: ['auditor', 'admin'] },
  { hash: '#/checkpoints', label: 'Checkpoints', roles: ['auditor', 'admin'] },
  { hash: '#/subjects', label: 'People', roles: ['registrar', 'admin'] },
  { hash: '#/admin', label: 'Keys & policy', roles: ['admin'] },
  { hash: '#/me', label: 'Your consent', roles: ['subject'] },
  { hash: '#/provenance', label: 'Provenance', roles: ['auditor', 'registrar', 'admin'] },
];

function start() {
  const s = state.session;
  document.getElementById('who-text').textContent = s.subject_id ? 'Signed in: your personal page'
    : `Signed in: ${s.role} of ${s.tenant}`;
  document.getElementById('who').hidden = false;
  const nav = document.getElementById('nav');
  nav.replaceChildren(...SECTIONS.filter((x) => x.roles.includes(s.role))
    .map((x) => el('a', { href: x.hash }, x.label)));
  nav.hidden = false;
  route();
}

const ROUTES = [
  [/^#\/decisions(?:\?(.*))?$/, (m) => decisionsView(new URLSearchParams(m[1] || ''))],
  [/^#\/entry\/(\d+)$/, (m) => entryView(Number(m[1]))],
  [/^#\/checkpoints$/, () => checkpointsView()],
  ...registryViews,
  ...subjectViews,
  ...provenanceViews,
];

function route() {
  if (!state.session) return;
  let hash = window.location.hash;
  const allowed = SECTIONS.filter((x) => x.roles.includes(state.session.role));
  if (!hash || hash === '#' || hash === '#/') hash = allowed.length ? allowed[0].hash : '#/none';
  for (const a of document.querySelectorAll('#nav a')) {
    if (hash.startsWith(a.getAttribute('href'))) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  for (const [re, view] of ROUTES) {
    const m = re.exec(hash);
    if (m) { view(m); return; }
  }
  setPage('Not found', el('p', {}, 'There is no such page in the console.'));
}

// ---- auditor: decisions ----

const VERDICTS = ['', 'allow', 'deny', 'review'];
const KINDS = ['', 'decision', 'subject', 'enrolment', 'grant', 'revocation', 'expiry', 'hash', 'erasure',
  'retention'];

function select(id, options, value) {
  return el('select', { id, name: id }, ...options.map((o) => el('option', { value: o, selected: o === value }, o || 'any')));
}

function toIso(local) {
  if (!local) return '';
  const d = new Date(local);
  return Number.isNaN(d.getTime()) ? '' : d.toISOString();
}

function fromIso(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return '';
  const pad = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

async function decisionsView(params) {
  const inputs = {
    tenant: el('input', { id: 'f-tenant', name: 'tenant', value: params.get('tenant') || '' }),
    use: el('input', { id: 'f-use', name: 'use', value: params.get('use') || '' }),
    decision: select('f-decision', VERDICTS, params.get('decision') || ''),
    kind: select('f-kind', KINDS, params.get('kind') || ''),
    order: el('select', { id: 'f-order', name: 'order' }, el('option', { value: 'newest',
      selected: params.get('order') !== 'oldest' }, 'newest first'), el('option', { value: 'oldest',
      selected: params.get('order') === 'oldest' }, 'oldest first')),
    subject: el('input', { id: 'f-subject', name: 'subject', value: params.get('subject') || '' }),
    model: el('input', { id: 'f-model', name: 'model', value: params.get('model') || '' }),
    since: el('input', { id: 'f-since', type: 'datetime-local', value: fromIso(params.get('since')) }),
    until: el('input', { id: 'f-until', type: 'datetime-local', value: fromIso(params.get('until')) }),
  };
  const form = el('form', { class: 'filters', role: 'search', 'aria-label': 'Filter the log', onsubmit: (ev) => {
    ev.preventDefault();
    const q = new URLSearchParams();
    for (const [k, input] of Object.entries(inputs)) {
      const v = input.type === 'datetime-local' ? toIso(input.value) : input.value.trim();
      if (v) q.set(k, v);
    }
    window.location.hash = `#/decisions?${q}`;
  } },
  field('f-tenant', 'Tenant', inputs.tenant), field('f-use', 'Use (e.g. img2img)', inputs.use),
  field('f-decision', 'Verdict', inputs.decision), field('f-kind', 'Kind of entry', inputs.kind),
  field('f-subject', 'Person (subject id)', inputs.subject), field('f-model', 'Model (e.g. nudenet)', inputs.model), field('f-since', 'From (your time)', inputs.since),
  field('f-until', 'Until (your time)', inputs.until),
  field('f-order', 'Order', inputs.order),
  el('div', {}, el('button', { type: 'submit' }, 'Apply filters')));
  const results = el('div', { 'aria-live': 'polite' }, el('p', {}, 'Loading…'));
  setPage('Decisions and consent events', el('p', { class: 'hint' },
    'Every decision the gateway made and every change to the consent registry, newest first. ',
    'Open an entry to see why it was decided and to verify it against the signed log in your browser.'),
  form, results);
  const query = new URLSearchParams(params);
  if (!query.get('order')) query.set('order', 'newest');
  const pages = [];
  async function load(cursor) {
    const q = new URLSearchParams(query);
    q.set('limit', '50');
    if (cursor) q.set('cursor', cursor);
    try {
      const page = await api(`v1/audit/entries?${q}`);
      pages.push(page);
      results.replaceChildren(entriesTable(page.entries), pager(page));
    } catch (err) { fail(results, err); }
  }
  function pager(page) {
    return el('div', { class: 'pager' },
      el('button', { type: 'button', class: 'secondary', disabled: !page.next_cursor,
        onclick: () => load(page.next_cursor) }, 'Next page'),
      el('button', { type: 'button', class: 'secondary', onclick: () => download(query) },
        'Download matching entries (JSON Lines)'),
      el('span', { class: 'hint' }, page.entries.length || !page.next_cursor ? `${page.entries.length} entries on this page`
        : 'No match in this stretch of the log: Next page searches further.'));
  }
  await load(null);
}

function entriesTable(entries) {
  if (!entries.length) return el('p', {}, 'No entries match these filters.');
  return el('table', {}, el('caption', {}, 'Log entries'),
    el('thead', {}, el('tr', {}, ...['#', 'Time (UTC)', 'Kind', 'Tenant', 'Use', 'Verdict', 'Details'].map(
      (h) => el('th', { scope: 'col' }, h)))),
    el('tbody', {}, ...entries.map((e) => {
      const r = e.record;
      return el('tr', {}, el('td', {}, String(e.index)), el('td', {}, r.created_at || '—'), el('td', {}, r.kind || ''),
        el('td', {}, r.tenant || '—'), el('td', {}, r.use || '—'), el('td', {}, verdict(r.decision)),
        el('td', {}, el('a', { href: `#/entry/${e.index}`, 'aria-label': `Open entry ${e.index}` }, 'Open')));
    })));
}

async function download(query) {
  const lines = [];
  let cursor = null;
  for (let i = 0; i < 100; i += 1) {
    const q = new URLSearchParams(query);
    q.set('limit', '1000');
    if (cursor) q.set('cursor', cursor);
    const page = await api(`v1/audit/entries?${q}`);
    for (const e of page.entries) lines.push(JSON.stringify(e));
    cursor = page.next_cursor;
    if (!cursor) break;
  }
  const url = URL.createObjectURL(new Blob([`${lines.join('\n')}\n`], { type: 'application/x-ndjson' }));
  const a = el('a', { href: url, download: 'consentgate-audit.jsonl' });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
  toast(`Downloaded ${lines.length} entries${cursor ? ' (first 100,000)' : ''}.`);
}

// ---- one entry ----

const STATES = {
  granted: 'granted — a valid grant covers this use', no_grant: 'no grant — enrolled, but no consent for this use',
  revoked: 'revoked — the person withdrew consent', expired: 'expired — the grant ran out',
  protected: 'protected — never without consent', no_match: 'no match — not an enrolled person',
  unidentified: 'unidentified — seen, but too small or unclear to identify',
};

export async function trustedVkey() {
  const pinned = localStorage.getItem('cg.vkey');
  if (pinned) return { vkey: pinned, pinned: true };
  if (!state.vkey) state.vkey = (await api('console/vkey')).vkey;
  return { vkey: state.vkey, pinned: false };
}

async function entryView(index) {
  setPage(`Entry ${index}`, el('p', {}, 'Loading…'));
  let entry;
  try { entry = await api(`v1/audit/entries/${index}`); } catch (err) { fail(main, err); return; }
  const r = entry.record;
  const findings = r.findings || {};
  const facts = el('dl', { class: 'facts' }, ...[
    ['Kind', r.kind], ['Verdict', r.decision ? verdict(r.decision) : '—'], ['Decision id', r.decision_id],
    ['Time (UTC)', r.created_at], ['Tenant', r.tenant], ['Use', r.use], ['Stage', r.stage],
    ['Policy', r.policy ? `${r.policy.name} (digest ${r.policy.digest})` : '—'],
    ['Grants relied on', (r.grant_ids || []).join(', ') || 'none'],
  ].filter(([, v]) => v !== undefined && v !== null).flatMap(([k, v]) => [el('dt', {}, k), el('dd', {}, v)]));
  const parts = [facts];
  if ((r.reasons || []).length) {
    parts.push(el('h2', {}, 'Why'), table('Reasons', ['Rule', 'Outcome', 'Detail'],
      r.reasons.map((x) => [x.rule, x.outcome, x.detail || ''])));
  }
  if ((findings.faces || []).length) {
    parts.push(el('h2', {}, 'Faces'), table('Faces and their consent state', ['Media', 'Where (x, y, w, h)', 'Consent', 'Grant'],
      findings.faces.map((f) => [String(f.media_index), (f.bbox || []).join(', '),
        STATES[(f.consent || {}).state] || (f.consent || {}).state || '—', (f.consent || {}).grant_id || '—'])));
  }
  if ((r.outputs || []).length) {
    parts.push(el('h2', {}, 'Released files'), table('Outputs', ['Media', 'SHA-256', 'Watermark id', 'C2PA manifest digest'],
      r.outputs.map((o) => [String(o.media_index), el('code', {}, o.sha256 || ''), o.watermark_id || '—',
        el('code', {}, o.manifest_digest || '—')])));
  }
  const outcome = el('div', { 'aria-live': 'polite', id: 'verify-result' });
  parts.push(el('h2', {}, 'Verify'), el('p', { class: 'hint' },
    'Recomputes this entry\'s fingerprint from what is shown here, follows the inclusion proof to the root of ',
    'the signed log, and checks the log\'s signature — all in your browser.'),
  el('button', { type: 'button', id: 'verify', onclick: async () => {
    outcome.replaceChildren(el('p', {}, 'Verifying…'));
    const key = await trustedVkey().catch(() => ({ vkey: '', pinned: false }));
    const steps = await verifyEntry(entry, key.vkey, api);
    const ok = steps.length > 0 && steps.every((s) => s.ok);
    outcome.replaceChildren(
      el('p', { class: `result ${ok ? 'verified' : 'failed'}`, id: 'verify-outcome' },
        ok ? 'Verified: this entry is in the signed log' : 'Failed: this entry does not match the signed log'),
      el('ul', { class: 'steps' }, ...steps.map((s) => el('li', { class: s.ok ? 'ok' : 'bad' }, `${s.label}: `,
        el('span', { class: 'mono' }, s.detail || '')))),
      el('p', { class: 'hint' }, key.pinned ? 'Checked with the key you pinned (Checkpoints page).'
        : 'Checked with the key this gateway serves; pin the key you were given on the Checkpoints page.'));
  } }, 'Verify in my browser'), outcome,
  el('details', {}, el('summary', {}, 'The entry as logged (JSON)'), el('pre', { class: 'mono' },
    JSON.stringify(r, null, 2))));
  setPage(`Entry ${index}`, ...parts);
}

// ---- checkpoints ----

async function checkpointsView() {
  const out = el('div', { 'aria-live': 'polite' }, el('p', {}, 'Loading…'));
  const pinned = localStorage.getItem('cg.vkey') || '';
  const input = el('input', { id: 'vkey', value: pinned, autocomplete: 'off', 'aria-describedby': 'vkey-help' });
  const pin = el('form', { onsubmit: async (ev) => {
    ev.preventDefault();
    const v = input.value.trim();
    try {
      if (v) { await parseVkey(v); localStorage.setItem('cg.vkey', v); toast('Key pinned.'); } else {
        localStorage.removeItem('cg.vkey'); toast('Using the key this gateway serves.');
      }
      checkpointsView();
    } catch (err) { toast(err.message); }
  } }, el('label', { for: 'vkey' }, 'The log key you trust (vkey)'), input,
  el('p', { class: 'hint', id: 'vkey-help' }, 'Paste the verifier key you were given out of band; leave empty to ',
    'use the one this gateway serves (that shows the log is self-consistent, not that it is authentic).'),
  el('button', { type: 'submit', class: 'secondary' }, 'Save key'));
  setPage('Checkpoints', el('p', { class: 'hint' },
    'A checkpoint is the log\'s signed summary: its size and the root of its Merkle tree. The console remembers ',
    'the last checkpoint it verified for you and checks that each new one extends it (nothing was rewritten).'),
  out, pin);
  try {
    const key = await parseVkey((await trustedVkey()).vkey);
    const cp = await api('v1/audit/checkpoint');
    const head = await openCheckpoint(cp.note, key);
    const seenText = localStorage.getItem(`cg.seen.${key.name}`);
    const rows = [el('p', { class: 'ok' }, `Signature valid: tree of ${head.size} entries, root `,
      el('code', {}, hex(head.root)))];
    if (seenText) {
      const seen = JSON.parse(seenText);
      if (seen.size <= head.size) {
        const proof = await api(`v1/audit/proofs/consistency?first=${seen.size}&second=${head.size}`);
        const ok = await verifyConsistency(seen.size, head.size, unhex(seen.root), head.root, proof.hashes);
        rows.push(el('p', { class: ok ? 'ok' : 'bad', id: 'consistency' }, ok
          ? `Consistent with the checkpoint of ${seen.size} entries you saw on ${seen.at}.`
          : `NOT consistent with the checkpoint of ${seen.size} entries you saw on ${seen.at}: the log was rewritten.`));
        if (ok) localStorage.setItem(`cg.seen.${key.name}`, JSON.stringify({ size: head.size, root: hex(head.root), at: new Date().toISOString() }));
      } else {
        rows.push(el('p', { class: 'bad', id: 'consistency' }, `The log is smaller than the ${seen.size} entries you saw: it was rolled back.`));
      }
    } else {
      localStorage.setItem(`cg.seen.${key.name}`, JSON.stringify({ size: head.size, root: hex(head.root), at: new Date().toISOString() }));
      rows.push(el('p', { class: 'hint', id: 'consistency' }, 'First checkpoint seen in this browser: remembered for next time.'));
    }
    rows.push(el('details', {}, el('summary', {}, 'The signed note'), el('pre', { class: 'mono' }, cp.note)));
    out.replaceChildren(...rows);
  } catch (err) { fail(out, err); }
}

// ---- boot ----

document.getElementById('sign-out').addEventListener('click', signOut);
window.addEventListener('hashchange', route);
(async () => {
  try {
    state.session = await api('console/session');
    start();
  } catch (err) {
    showSignIn('');
  }
})();

