// Why: someone holding a picture or video wants to know where it came from: drop it here and see what
// its C2PA manifest says, whether the invisible watermark is there (it survives stripped metadata), the
// decision that released it, and whether each grant that decision relied on still holds today.
import { api, el, fail, setPage, table, verdict } from './ui.js';

const C2PA_WORDS = {
  Trusted: 'Trusted — signed by a certificate this gateway trusts, and unchanged since',
  Valid: 'Valid — signed and unchanged, but by a certificate this gateway does not know',
  Invalid: 'Invalid — the file was changed after it was signed, or the signature is broken',
  ManifestNotFound: 'No C2PA manifest — the metadata was stripped, or it never had one',
};
const GRANT_WORDS = {
  granted: 'still granted', revoked: 'revoked since', expired: 'expired since', erased: 'the person was erased since',
};

function facts(pairs) {
  return el('dl', { class: 'facts' }, ...pairs.filter(([, v]) => v !== undefined && v !== null && v !== '')
    .flatMap(([k, v]) => [el('dt', {}, k), el('dd', {}, typeof v === 'object' && !(v instanceof Node)
      ? JSON.stringify(v) : v)]));
}

function report(r) {
  const c2pa = r.c2pa || {};
  const wm = r.watermark;
  const found = wm && (wm.found || wm.watermark_id || wm.wm_id);
  const parts = [el('h2', {}, 'What the file carries'), facts([
    ['Type', r.type],
    ['C2PA', C2PA_WORDS[c2pa.state] || c2pa.state || 'not checked'],
    ['C2PA assertions', (c2pa.assertions || []).join(', ')],
    ['C2PA problems', (c2pa.validation_errors || []).length ? c2pa.validation_errors.join('; ') : undefined],
    ['Watermark', found ? `found (id ${wm.wm_id ?? wm.watermark_id ?? '?'}${wm.confidence !== undefined
      ? `, confidence ${Number(wm.confidence).toFixed(4)}` : ''}) — it survives stripped metadata`
      : 'none found'],
  ]), el('details', {}, el('summary', {}, 'Everything the check found (JSON)'),
    el('pre', { class: 'mono' }, JSON.stringify({ c2pa, watermark: wm }, null, 2)))];
  parts.push(el('h2', {}, 'The decision behind it'));
  if (!(r.decisions || []).length) {
    parts.push(el('p', { id: 'provenance-none' }, 'Neither the manifest nor a watermark leads to a decision of this ',
      'gateway: it did not release this file (or the file was changed beyond recognition).'));
  }
  for (const d of r.decisions || []) {
    parts.push(el('div', { class: 'card decision' }, facts([
      ['Decision id', d.decision_id], ['Verdict', d.decision ? verdict(d.decision) : 'not in the log'],
      ['Use', d.use], ['Tenant', d.tenant], ['When (UTC)', d.created_at],
      ['Policy', d.policy ? `${d.policy.name} (digest ${d.policy.digest})` : undefined],
      ['Log entry', d.audit_index !== undefined ? el('a', { href: `#/entry/${d.audit_index}` },
        `#${d.audit_index} (open and verify)`) : undefined],
    ]), d.grants && d.grants.length ? table('The consent it relied on, as it stands now', ['Grant', 'Today'],
      d.grants.map((g) => [el('code', {}, g.grant_id), GRANT_WORDS[g.state] || g.state]))
      : el('p', { class: 'hint' }, d.grants ? 'It relied on no grant (no enrolled person was involved).'
        : 'Its tenant and grants are not shown to you.')));
  }
  return parts;
}

function provenanceView() {
  const out = el('div', { 'aria-live': 'polite', id: 'provenance-result' });
  const input = el('input', { id: 'p-file', type: 'file', accept: 'image/*,video/*' });
  async function check(file) {
    if (!file) return;
    out.replaceChildren(el('p', {}, `Checking ${file.name}…`));
    const form = new FormData();
    form.append('media', file, file.name);
    try { out.replaceChildren(...report(await api('v1/provenance/verify', { method: 'POST', form }))); } catch (err) {
      fail(out, err);
    }
  }
  input.addEventListener('change', () => check(input.files[0]));
  const zone = el('div', { class: 'dropzone', id: 'dropzone' },
    el('p', {}, 'Drop a picture or video here, or '), el('label', { for: 'p-file' }, 'choose a file'), input);
  zone.addEventListener('dragover', (ev) => { ev.preventDefault(); zone.classList.add('over'); });
  zone.addEventListener('dragleave', () => zone.classList.remove('over'));
  zone.addEventListener('drop', (ev) => {
    ev.preventDefault();
    zone.classList.remove('over');
    check(ev.dataTransfer.files[0]);
  });
  setPage('Where did this file come from?', el('p', { class: 'hint' },
    'The file is sent to this gateway only to be checked; it is not stored.'), zone, out);
}

export const views = [[/^#\/provenance$/, () => provenanceView()]];
