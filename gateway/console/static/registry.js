// Why: registrars (and admins) act for the people in the registry — add a person, enrol their face or
// voice after showing them the notice they agree to (its version is recorded), grant and revoke consent,
// erase them — and admins see the live policy and manage API keys. Destructive actions ask first.
import { api, el, fail, field, setPage, table, toast, verdict } from './ui.js';

const USES = ['txt2img', 'img2img', 'face_swap', 'txt2video', 'img2video', 'video2video', 'voice_clone'];

function splitList(text) {
  return text.split(',').map((x) => x.trim()).filter(Boolean);
}

/** An inline "are you sure?" panel; focus moves to it, Escape or Cancel closes it. */
function confirmPanel(where, question, action, label) {
  const yes = el('button', { type: 'button', class: 'danger', onclick: async () => {
    yes.disabled = true;
    try { await action(); } catch (err) { fail(where, err); }
  } }, label);
  const panel = el('div', { class: 'card', role: 'alertdialog', 'aria-label': question,
    onkeydown: (ev) => { if (ev.key === 'Escape') panel.remove(); } },
  el('p', {}, question), yes, ' ', el('button', { type: 'button', class: 'secondary',
    onclick: () => panel.remove() }, 'Cancel'));
  where.replaceChildren(panel);
  yes.focus();
}

// ---- people ----

async function subjectsView() {
  const name = el('input', { id: 's-name', required: true, autocomplete: 'off' });
  const aliases = el('input', { id: 's-aliases', autocomplete: 'off' });
  const protectedBox = el('input', { id: 's-protected', type: 'checkbox' });
  const list = el('div', {}, el('p', {}, 'Loading…'));
  const add = el('form', { class: 'card', 'aria-label': 'Add a person', onsubmit: async (ev) => {
    ev.preventDefault();
    try {
      const made = await api('v1/subjects', { method: 'POST', json: {
        display_name: name.value.trim(), aliases: splitList(aliases.value), protected: protectedBox.checked } });
      toast(`Added ${made.display_name}.`);
      window.location.hash = `#/subject/${made.id}`;
    } catch (err) { fail(list, err); }
  } }, el('h2', {}, 'Add a person'), field('s-name', 'Name', name),
  field('s-aliases', 'Other names (comma-separated)', aliases, 'Names a prompt might use for them.'),
  el('div', { class: 'inline' }, protectedBox, ' ', el('label', { for: 's-protected' },
    'Protected: never allow their likeness without a grant, whatever the policy says (public figures)')),
  el('button', { type: 'submit' }, 'Add'));
  setPage('People in the registry', el('p', { class: 'hint' },
    'People whose likeness the gateway protects. Names are stored encrypted; faces and voices only as ',
    'encrypted templates that erasure destroys.'), list, add);
  try {
    const { subjects } = await api('v1/subjects?limit=1000');
    list.replaceChildren(subjects.length ? table('People', ['Name', 'Id', 'Protected', 'Faces', 'Added', 'Details'],
      subjects.map((s) => [s.display_name, el('code', {}, s.id), s.protected ? 'yes' : 'no',
        String(s.template_count || 0), s.created_at,
        el('a', { href: `#/subject/${s.id}`, 'aria-label': `Open ${s.display_name}` }, 'Open')]))
      : el('p', {}, 'Nobody is enrolled yet.'));
  } catch (err) { fail(list, err); }
}

function grantState(g) {
  if (g.revoked_at) return `revoked ${g.revoked_at}`;
  if (g.expires_at && new Date(g.expires_at) <= new Date()) return `expired ${g.expires_at}`;
  return g.expires_at ? `active until ${g.expires_at}` : 'active';
}

async function subjectView(id) {
  setPage('Person', el('p', {}, 'Loading…'));
  let subject;
  try { subject = await api(`v1/subjects/${encodeURIComponent(id)}`); } catch (err) {
    fail(document.getElementById('main'), err); return;
  }
  const grantsBox = el('div', { 'aria-live': 'polite' });
  const usesBox = el('div', {});
  const erasing = el('div', {});
  async function loadGrants() {
    const { grants } = await api(`v1/subjects/${encodeURIComponent(id)}/grants`);
    grantsBox.replaceChildren(grants.length ? table('Grants', ['Grant', 'Who may use the likeness', 'For', 'State', 'Action'],
      grants.map((g) => {
        const cell = el('div', {});
        const revoke = g.revoked_at ? '' : el('button', { type: 'button', class: 'secondary',
          'aria-label': `Revoke grant ${g.id}`, onclick: () => confirmPanel(cell,
            `Revoke this grant for ${g.grantee_tenant}? The next request that relies on it is refused.`,
            async () => {
              await api(`v1/grants/${encodeURIComponent(g.id)}`, { method: 'DELETE' });
              toast('Grant revoked.');
              await loadGrants();
            }, 'Yes, revoke') }, 'Revoke');
        cell.append(revoke);
        return [el('code', {}, g.id), g.grantee_end_user ? `${g.grantee_tenant} (user ${g.grantee_end_user})`
          : g.grantee_tenant, g.uses.join(', '), grantState(g), cell];
      })) : el('p', {}, 'No grants: their likeness is refused for every use.'));
  }
  const tenant = el('input', { id: 'g-tenant', required: true, autocomplete: 'off' });
  const endUser = el('input', { id: 'g-user', autocomplete: 'off' });
  const expires = el('input', { id: 'g-expires', type: 'datetime-local' });
  const useBoxes = USES.map((u) => el('input', { type: 'checkbox', id: `g-use-${u}`, value: u }));
  const grantForm = el('form', { class: 'card', 'aria-label': 'Grant consent', onsubmit: async (ev) => {
    ev.preventDefault();
    const uses = useBoxes.filter((b) => b.checked).map((b) => b.value);
    const body = { grantee_tenant: tenant.value.trim(), uses };
    if (endUser.value.trim()) body.grantee_end_user = endUser.value.trim();
    if (expires.value) body.expires_at = new Date(expires.value).toISOString();
    try {
      await api(`v1/subjects/${encodeURIComponent(id)}/grants`, { method: 'POST', json: body });
      toast('Grant recorded.');
      grantForm.reset();
      await loadGrants();
    } catch (err) { fail(grantsBox, err); }
  } }, el('h2', {}, 'Grant consent'),
  field('g-tenant', 'Who may use the likeness (tenant)', tenant),
  field('g-user', 'Only for this end user of theirs (optional)', endUser),
  el('fieldset', {}, el('legend', {}, 'For which uses'), ...USES.map((u, i) => el('span', { class: 'check' },
    useBoxes[i], ' ', el('label', { for: `g-use-${u}` }, u), ' '))),
  field('g-expires', 'Until (optional, your time)', expires),
  el('button', { type: 'submit' }, 'Grant'));
  const facts = el('dl', { class: 'facts' }, ...[
    ['Name', subject.display_name], ['Other names', (subject.aliases || []).join(', ') || '—'], ['Id', subject.id],
    ['Protected', subject.protected ? 'yes' : 'no'], ['Face templates', String(subject.template_count || 0)],
    ['Face models', (subject.face_models || []).join(', ') || '—'], ['Added', subject.created_at],
  ].flatMap(([k, v]) => [el('dt', {}, k), el('dd', {}, v)]));
  setPage(subject.display_name, facts, el('h2', {}, 'Grants'), grantsBox, grantForm, await enrolForm(id),
    el('h2', {}, 'Where their likeness was used'), usesBox,
    el('h2', {}, 'Erase'), el('p', { class: 'hint' }, 'Erasure destroys their encryption key: names, faces and ',
      'voices become unreadable for good, and a receipt goes into the audit log.'), erasing,
    el('button', { type: 'button', class: 'danger', onclick: () => confirmPanel(erasing,
      `Erase ${subject.display_name} for good? This cannot be undone.`, async () => {
        await api(`v1/subjects/${encodeURIComponent(id)}`, { method: 'DELETE' });
        toast('Erased.');
        window.location.hash = '#/subjects';
      }, 'Yes, erase') }, 'Erase this person'));
  try { await loadGrants(); } catch (err) { fail(grantsBox, err); }
  try {
    const page = await api(`v1/subjects/${encodeURIComponent(id)}/uses?limit=100`);
    const uses = page.uses || page.entries || [];
    usesBox.replaceChildren(uses.length ? table('Decisions that involved this person',
      ['Time (UTC)', 'Tenant', 'Use', 'Verdict', 'Log entry'],
      uses.map((u) => [u.created_at || '', u.tenant || '', u.use || '', verdict(u.decision),
        String(u.index ?? '')])) : el('p', {}, 'No decision has involved this person yet.'));
  } catch (err) { fail(usesBox, err); }
}

async function enrolForm(id) {
  const box = el('div', { 'aria-live': 'polite' });
  let notices = [];
  try { notices = (await api('console/notices')).notices; } catch (err) { fail(box, err); }
  const kind = el('select', { id: 'e-kind' }, el('option', { value: 'faces' }, 'Face photos (1–10)'),
    el('option', { value: 'voices' }, 'Voice clips (1–10, speech)'));
  const notice = el('select', { id: 'e-notice', required: true },
    ...notices.map((n) => el('option', { value: n.version }, `${n.title} (${n.version})`)));
  const text = el('div', { class: 'notice', id: 'e-notice-text', tabindex: '0', role: 'region',
    'aria-label': 'Notice text' });
  const show = () => {
    const n = notices.find((x) => x.version === notice.value);
    text.replaceChildren(...(n ? n.text.split(/\n{2,}/).map((p) => el('p', {}, p)) : [el('p', {}, 'No notice is configured.')]),
      n ? el('p', { class: 'hint' }, `Version ${n.version}; text SHA-256 ${n.sha256}`) : '');
  };
  notice.addEventListener('change', show);
  show();
  const agreed = el('input', { id: 'e-agreed', type: 'checkbox', required: true });
  const files = el('input', { id: 'e-files', type: 'file', multiple: true, required: true,
    accept: 'image/*,audio/*' });
  const form = el('form', { class: 'card', 'aria-label': 'Enrol', onsubmit: async (ev) => {
    ev.preventDefault();
    const data = new FormData();
    data.append('notice_version', notice.value);
    for (const f of files.files) data.append('media', f, f.name);
    try {
      const done = await api(`v1/subjects/${encodeURIComponent(id)}/${kind.value}`, { method: 'POST', form: data });
      box.replaceChildren(el('p', { class: 'ok' }, `Enrolled under notice ${done.notice_version}.`));
      form.reset();
      show();
    } catch (err) { fail(box, err); }
  } }, el('h2', {}, 'Enrol their face or voice'),
  field('e-notice', 'Notice shown to the person', notice), text,
  el('div', { class: 'inline' }, agreed, ' ', el('label', { for: 'e-agreed' },
    'The person has read this notice and agrees to it (its version is recorded with the enrolment)')),
  field('e-kind', 'What to enrol', kind), field('e-files', 'Files', files),
  el('button', { type: 'submit' }, 'Enrol'), box);
  return form;
}

// ---- admin: policy and keys ----

async function adminView() {
  const policyBox = el('div', { 'aria-live': 'polite' }, el('p', {}, 'Loading…'));
  const keysBox = el('div', { 'aria-live': 'polite' }, el('p', {}, 'Loading…'));
  const created = el('div', { 'aria-live': 'polite' });
  async function loadPolicy() {
    const p = await api('v1/policy');
    policyBox.replaceChildren(el('dl', { class: 'facts' }, ...[
      ['Active policy', p.name || 'none'], ['Digest', el('code', {}, p.digest || '—')], ['Loaded', p.loaded_at || '—'],
      ['Files', (p.files || []).join(', ') || '—'], ['Tenant overlays', (p.tenants || []).join(', ') || 'none'],
      ['Last reload', p.last_error ? el('span', { class: 'error' }, `refused at ${p.last_error_at}: ${p.last_error}`)
        : 'accepted'],
    ].flatMap(([k, v]) => [el('dt', {}, k), el('dd', {}, v)])),
    el('button', { type: 'button', class: 'secondary', onclick: async () => {
      try {
        const r = await api('v1/policy/reload', { method: 'POST' });
        toast(r.reloaded ? 'Policy reloaded.' : 'Reload refused: the last good policy keeps serving.');
        await loadPolicy();
      } catch (err) { fail(policyBox, err); }
    } }, 'Reload the policy now'));
  }
  async function loadKeys() {
    const { keys } = await api('v1/apikeys');
    keysBox.replaceChildren(table('API keys (secrets are never shown again)',
      ['Id', 'Tenant', 'Role', 'Name', 'Uses', 'Created', 'State'],
      keys.map((k) => {
        const cell = el('div', {});
        if (k.revoked_at) cell.append(`revoked ${k.revoked_at}`);
        else {
          cell.append('active ', el('button', { type: 'button', class: 'secondary', 'aria-label': `Revoke key ${k.id}`,
            onclick: () => confirmPanel(cell, `Revoke key ${k.id} (${k.role} of ${k.tenant})? It stops working at once.`,
              async () => {
                await api(`v1/apikeys/${encodeURIComponent(k.id)}`, { method: 'DELETE' });
                toast('Key revoked.');
                await loadKeys();
              }, 'Yes, revoke') }, 'Revoke'));
        }
        return [el('code', {}, k.id), k.tenant, k.role, k.name || '', k.uses ? k.uses.join(', ') : 'every use',
          k.created_at, cell];
      })));
  }
  const tenant = el('input', { id: 'k-tenant', required: true, autocomplete: 'off' });
  const roleSel = el('select', { id: 'k-role' }, ...['generator', 'auditor', 'registrar', 'admin'].map(
    (r) => el('option', { value: r }, r)));
  const name = el('input', { id: 'k-name', autocomplete: 'off' });
  const uses = el('input', { id: 'k-uses', autocomplete: 'off' });
  const form = el('form', { class: 'card', 'aria-label': 'Create a key', onsubmit: async (ev) => {
    ev.preventDefault();
    const body = { tenant: tenant.value.trim(), role: roleSel.value, name: name.value.trim() };
    if (uses.value.trim()) body.uses = splitList(uses.value);
    try {
      const made = await api('v1/apikeys', { method: 'POST', json: body });
      created.replaceChildren(el('div', { class: 'card' }, el('p', {}, `New ${made.role} key for ${made.tenant} — `,
        'copy it now, it is shown only once:'), el('code', { id: 'new-key' }, made.key)));
      form.reset();
      await loadKeys();
    } catch (err) { fail(created, err); }
  } }, el('h2', {}, 'Create a key'), field('k-tenant', 'Tenant', tenant), field('k-role', 'Role', roleSel),
  field('k-name', 'Name (what it is for)', name),
  field('k-uses', 'Uses it may request (comma-separated; empty: every use)', uses),
  el('button', { type: 'submit' }, 'Create key'), created);
  setPage('Keys and policy', el('h2', {}, 'Policy'), policyBox, el('h2', {}, 'API keys'), keysBox, form);
  try { await loadPolicy(); } catch (err) { fail(policyBox, err); }
  try { await loadKeys(); } catch (err) { fail(keysBox, err); }
}

export const views = [
  [/^#\/subjects$/, () => subjectsView()],
  [/^#\/subject\/([0-9A-Za-z_-]+)$/, (m) => subjectView(m[1])],
  [/^#\/admin$/, () => adminView()],
];
