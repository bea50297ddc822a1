// Why: the person in the picture signs in with the access token a registrar gave them and sees, in
// plain words, who may use their likeness, every use with a proof their own browser checks, and can
// revoke a grant, take their data away and ask to be erased — without going through anyone.
import { api, el, fail, setPage, state, table, toast, verdict } from './ui.js';
import { verifyReceipt } from './verify.js';

const USE_WORDS = {
  txt2img: 'pictures made from text', img2img: 'pictures edited from a photo', face_swap: 'face swaps',
  txt2video: 'videos made from text', img2video: 'videos made from a photo', video2video: 'edited videos',
  voice_clone: 'copies of your voice',
};

function words(uses) {
  return uses.map((u) => USE_WORDS[u] || u).join(', ');
}

function download(name, data) {
  const url = URL.createObjectURL(new Blob([JSON.stringify(data, null, 2)], { type: 'application/json' }));
  const a = el('a', { href: url, download: name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

async function meView() {
  const id = state.session.subject_id;
  const sid = encodeURIComponent(id);
  const grantsBox = el('div', { 'aria-live': 'polite' }, el('p', {}, 'Loading…'));
  const usesBox = el('div', { 'aria-live': 'polite' }, el('p', {}, 'Loading…'));
  const dataBox = el('div', { 'aria-live': 'polite' });
  let me = { display_name: '' };
  try { me = await api(`v1/subjects/${sid}`); } catch (err) { /* shown below */ }

  async function loadGrants() {
    const { grants } = await api(`v1/subjects/${sid}/grants`);
    grantsBox.replaceChildren(grants.length ? table('Your grants', ['Who may use it', 'For', 'Until', 'State', 'Action'],
      grants.map((g) => {
        const cell = el('div', {});
        if (!g.revoked_at) {
          cell.append(el('button', { type: 'button', class: 'secondary', 'aria-label': `Revoke the grant to ${g.grantee_tenant}`,
            onclick: () => {
              const yes = el('button', { type: 'button', class: 'danger', onclick: async () => {
                try {
                  await api(`v1/grants/${encodeURIComponent(g.id)}`, { method: 'DELETE' });
                  toast('Revoked. It takes effect on the next request.');
                  await loadGrants();
                } catch (err) { fail(cell, err); }
              } }, 'Yes, revoke');
              cell.replaceChildren(el('div', { class: 'card', role: 'alertdialog',
                'aria-label': 'Confirm revocation' }, el('p', {},
                `Stop ${g.grantee_tenant} from using your likeness for ${words(g.uses)}? `,
                'Anything they ask for after this is refused.'), yes, ' ',
              el('button', { type: 'button', class: 'secondary', onclick: () => loadGrants() }, 'Cancel')));
              yes.focus();
            } }, 'Revoke'));
        }
        const state = g.revoked_at ? `revoked ${g.revoked_at}` : (g.expires_at && new Date(g.expires_at) <= new Date()
          ? 'expired' : 'active');
        return [g.grantee_end_user ? `${g.grantee_tenant} (for their user ${g.grantee_end_user})` : g.grantee_tenant,
          words(g.uses), g.expires_at || 'until you revoke it', state, cell];
      })) : el('p', {}, 'You have granted nobody the use of your likeness: every request that shows you is refused.'));
  }

  async function loadUses() {
    const page = await api(`v1/subjects/${sid}/uses?limit=200`);
    const uses = page.uses || [];
    if (!uses.length) { usesBox.replaceChildren(el('p', {}, 'Nobody has used your likeness through this gateway.')); return; }
    usesBox.replaceChildren(table('Every use of your likeness', ['When (UTC)', 'Who', 'For', 'Outcome', 'Files made',
      'Proof'], uses.map((u) => {
      const cell = el('div', {});
      if (u.receipt) {
        cell.append(el('button', { type: 'button', class: 'secondary', 'aria-label': `Verify use ${u.index}`,
          onclick: async () => {
            const vkey = localStorage.getItem('cg.vkey') || (await api('console/vkey')).vkey;
            const steps = await verifyReceipt(u.receipt, vkey);
            const ok = steps.length > 0 && steps.every((s) => s.ok);
            cell.replaceChildren(el('span', { class: ok ? 'ok' : 'bad', id: `use-${u.index}-result`,
              title: steps.map((s) => `${s.label}: ${s.detail}`).join('\n') },
            ok ? 'Verified in your browser' : `Failed: ${steps.filter((s) => !s.ok).map((s) => s.detail).join('; ')}`));
          } }, 'Verify'));
      } else {
        cell.append('pending (the next signed checkpoint will cover it)');
      }
      const files = (u.outputs || []).map((o) => o.watermark_id ? `watermark ${o.watermark_id}` : o.sha256).join(', ');
      return [u.created_at || '', u.tenant || '', USE_WORDS[u.use] || u.use || '', verdict(u.decision),
        files || 'none', cell];
    })));
  }

  const erasure = el('div', { 'aria-live': 'polite' });
  setPage(me.display_name ? `Your consent, ${me.display_name}` : 'Your consent',
    el('p', { class: 'hint' }, 'This page shows who may use your face or voice through this gateway, and every ',
      'time it was used. Each use carries a proof that your own browser checks against the gateway\'s signed log.'),
    el('h2', {}, 'Who may use your likeness'), grantsBox,
    el('h2', {}, 'Where your likeness was used'), usesBox,
    el('h2', {}, 'Your data'), el('p', {}, 'Everything the gateway holds about you, as a file: your profile, ',
      'enrolments, grants, the history of your consent and every use with its proof (never your face template).'),
    el('button', { type: 'button', class: 'secondary', onclick: async () => {
      try {
        download('my-consentgate-data.json', await api(`v1/subjects/${sid}/export`));
        dataBox.replaceChildren(el('p', { class: 'ok' }, 'Downloaded.'));
      } catch (err) { fail(dataBox, err); }
    } }, 'Download my data'), dataBox,
    el('h2', {}, 'Erasure'), el('p', {}, 'You can ask to be erased: your encryption key is destroyed, so your ',
      'templates, photos and name can no longer be read by anyone, and your grants end.'),
    el('button', { type: 'button', class: 'danger', onclick: () => {
      const yes = el('button', { type: 'button', class: 'danger', onclick: async () => {
        try {
          const r = await api(`v1/subjects/${sid}/erasure-requests`, { method: 'POST' });
          erasure.replaceChildren(el('p', { class: 'ok', id: 'erasure-result' }, r.state === 'queued'
            ? `Your request is recorded (${r.request_id}); a registrar carries it out.` : 'You have been erased.'));
        } catch (err) { fail(erasure, err); }
      } }, 'Yes, erase me');
      erasure.replaceChildren(el('div', { class: 'card', role: 'alertdialog', 'aria-label': 'Confirm erasure' },
        el('p', {}, 'Ask to be erased? This cannot be undone.'), yes, ' ',
        el('button', { type: 'button', class: 'secondary', onclick: () => erasure.replaceChildren() }, 'Cancel')));
      yes.focus();
    } }, 'Ask to be erased'), erasure);
  try { await loadGrants(); } catch (err) { fail(grantsBox, err); }
  try { await loadUses(); } catch (err) { fail(usesBox, err); }
}

export const views = [[/^#\/me$/, () => meView()]];
