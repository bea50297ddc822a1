// Why: an auditor (or the person in the picture) should not take the server's word that an entry is
// in the signed log. This module recomputes everything in the browser: the entry's leaf hash from its
// canonical JSON (RFC 8785), the Merkle root through the inclusion proof (RFC 9162), and the Ed25519
// signature of the checkpoint (C2SP signed note) with @noble/ed25519. Hashing is WebCrypto SHA-256.
import * as ed from './vendor/noble-ed25519.js';

const enc = new TextEncoder();

export function hex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

export function unhex(text) {
  if (!/^([0-9a-f]{2})*$/i.test(text)) throw new Error('not hex');
  return Uint8Array.from(text.match(/../g) || [], (h) => parseInt(h, 16));
}

function unb64(text) {
  const raw = atob(text);
  return Uint8Array.from(raw, (c) => c.charCodeAt(0));
}

function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) { out.set(p, at); at += p.length; }
  return out;
}

function same(a, b) {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

export async function sha256(bytes) {
  if (!globalThis.crypto || !crypto.subtle) {
    throw new Error('this page is not in a secure context (HTTPS or localhost), so the browser offers no WebCrypto');
  }
  return new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
}

/** RFC 8785 (JCS): ECMAScript number and string forms, keys sorted by UTF-16 code units. */
export function canonical(value) {
  if (value === null || typeof value === 'boolean' || typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw new Error('a record cannot hold NaN or Infinity');
    return JSON.stringify(value);
  }
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`;
  if (typeof value === 'object') {
    const keys = Object.keys(value).sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonical(value[k])}`).join(',')}}`;
  }
  throw new Error(`cannot canonicalise a ${typeof value}`);
}

/** The leaf hash of a record as the log hashes it: SHA-256(0x00 || JCS(record without `audit`)). */
export async function leafHash(record) {
  const copy = { ...record };
  delete copy.audit;
  return sha256(concat(Uint8Array.of(0), enc.encode(canonical(copy))));
}

async function node(left, right) {
  return sha256(concat(Uint8Array.of(1), left, right));
}

const half = (n) => Math.floor(n / 2);
const odd = (n) => n % 2 === 1;

function isPowerOfTwo(n) {
  while (n > 1) { if (odd(n)) return false; n = half(n); }
  return n === 1;
}

/** RFC 9162 §2.1.3.2: the root that `hashes` lead to from `leaf` at `index` in a tree of `size`. */
export async function rootFromInclusion(index, size, leaf, hashes) {
  if (index >= size) throw new Error('index beyond the tree');
  let fn = index;
  let sn = size - 1;
  let r = leaf;
  for (const h of hashes.map(unhex)) {
    if (sn === 0) throw new Error('the inclusion proof is too long');
    if (odd(fn) || fn === sn) {
      r = await node(h, r);
      while (!odd(fn) && fn !== 0) { fn = half(fn); sn = half(sn); }
    } else {
      r = await node(r, h);
    }
    fn = half(fn); sn = half(sn);
  }
  if (sn !== 0) throw new Error('the inclusion proof is too short');
  return r;
}

/** RFC 9162 §2.1.4.2: does `proof` show the tree of `second` extends the tree of `first`? */
export async function verifyConsistency(first, second, firstRoot, secondRoot, proof) {
  if (first > second) return false;
  if (first === second) return proof.length === 0 && same(firstRoot, secondRoot);
  if (first === 0) return true;
  if (proof.length === 0) return false;
  const path = proof.map(unhex);
  if (isPowerOfTwo(first)) path.unshift(firstRoot);
  let fn = first - 1;
  let sn = second - 1;
  while (odd(fn)) { fn = half(fn); sn = half(sn); }
  let fr = path[0];
  let sr = path[0];
  for (const c of path.slice(1)) {
    if (sn === 0) return false;
    if (odd(fn) || fn === sn) {
      fr = await node(c, fr);
      sr = await node(c, sr);
      while (!odd(fn) && fn !== 0) { fn = half(fn); sn = half(sn); }
    } else {
      sr = await node(sr, c);
    }
    fn = half(fn); sn = half(sn);
  }
  return sn === 0 && same(fr, firstRoot) && same(sr, secondRoot);
}

/** A C2SP vkey: `<name>+<hex key hash>+<base64(0x01 || Ed25519 public key)>`. */
export async function parseVkey(text) {
  const parts = text.trim().split('+');
  if (parts.length < 3) throw new Error('a verifier key looks like name+1a2b3c4d+AQ...');
  const name = parts[0];
  const hash = parts[1];
  const raw = unb64(parts.slice(2).join('+'));
  if (raw.length !== 33 || raw[0] !== 1) throw new Error('the verifier key is not an Ed25519 key');
  const publicKey = raw.slice(1);
  const keyHash = (await sha256(concat(enc.encode(name), Uint8Array.of(0x0a, 0x01), publicKey))).slice(0, 4);
  if (hex(keyHash) !== hash.toLowerCase()) throw new Error('the verifier key\'s hash does not match its key');
  return { name, keyHash, publicKey };
}

/** Check a signed checkpoint note with `key`; returns {origin, size, root} from the signed body. */
export async function openCheckpoint(note, key) {
  const cut = note.indexOf('\n\n');
  if (cut < 0) throw new Error('the checkpoint is not a signed note');
  const body = note.slice(0, cut + 1);
  const lines = body.split('\n');
  const [origin, sizeText, rootText] = lines;
  if (lines.length !== 4 || !/^\d+$/.test(sizeText)) throw new Error('the checkpoint body is malformed');
  const message = enc.encode(body);
  let signed = false;
  for (const line of note.slice(cut + 2).split('\n')) {
    const m = /^\u2014 (\S+) (\S+)$/.exec(line);
    if (!m || m[1] !== key.name) continue;
    const blob = unb64(m[2]);
    if (blob.length !== 68 || !same(blob.slice(0, 4), key.keyHash)) continue;
    if (await ed.verifyAsync(blob.slice(4), message, key.publicKey)) { signed = true; break; }
  }
  if (!signed) throw new Error('no valid signature by the trusted key on this checkpoint');
  if (origin !== key.name) throw new Error('the checkpoint is for another log');
  return { origin, size: Number(sizeText), root: unb64(rootText) };
}

/**
 * Verify one entry end to end. `fetchJson(path)` reads the gateway's API. Returns a list of steps
 * {label, ok, detail}; the entry is verified only when every step is ok.
 */
export async function verifyEntry(entry, vkeyText, fetchJson) {
  const steps = [];
  const step = (label, ok, detail) => { steps.push({ label, ok, detail }); return ok; };
  try {
    const key = await parseVkey(vkeyText);
    step('Read the log\'s public key', true, `${key.name} (key id ${hex(key.keyHash)})`);
    const leaf = await leafHash(entry.record);
    const claimed = entry.record.audit && entry.record.audit.leaf_hash;
    step('Recompute the entry\'s fingerprint (leaf hash) from its contents', true, hex(leaf));
    if (claimed && claimed !== hex(leaf)) {
      step('Compare it with the fingerprint the server states', false,
        `the server states ${claimed}: the contents were changed after they were logged`);
    }
    const cp = await fetchJson('v1/audit/checkpoint');
    const head = await openCheckpoint(cp.note, key);
    step('Check the signature on the latest checkpoint', true, `signed tree of ${head.size} entries`);
    if (entry.index >= head.size) {
      step('The checkpoint covers the entry', false, 'not yet: a newer checkpoint will cover it; try again shortly');
      return steps;
    }
    const proof = await fetchJson(`v1/audit/proofs/inclusion?index=${entry.index}&tree_size=${head.size}`);
    const root = await rootFromInclusion(entry.index, head.size, leaf, proof.hashes);
    step('Follow the inclusion proof from the fingerprint to the signed root', same(root, head.root),
      same(root, head.root) ? `root ${hex(root)}`
        : 'the proof does not lead to the signed root: this entry is not the one the log signed');
  } catch (err) {
    step('Verification could not finish', false, String(err && err.message ? err.message : err));
  }
  return steps;
}

/**
 * Verify a receipt `{index, leaf_hash, inclusion_proof: {tree_size, hashes}, checkpoint: {note}}` (what a
 * person gets for each use of their likeness): the checkpoint's signature, then the inclusion proof from
 * the entry's fingerprint to the signed root. The entry itself is not shown to them (it may name other
 * people), so its fingerprint is taken as given: this proves that fingerprint is in the signed log.
 */
export async function verifyReceipt(receipt, vkeyText) {
  const steps = [];
  const step = (label, ok, detail) => { steps.push({ label, ok, detail }); return ok; };
  try {
    const key = await parseVkey(vkeyText);
    const head = await openCheckpoint(receipt.checkpoint.note, key);
    step('Check the signature on the checkpoint', true, `signed tree of ${head.size} entries`);
    const proof = receipt.inclusion_proof;
    if (proof.tree_size !== head.size) {
      step('The proof is for the signed checkpoint', false, `proof for ${proof.tree_size}, checkpoint ${head.size}`);
      return steps;
    }
    const root = await rootFromInclusion(receipt.index, head.size, unhex(receipt.leaf_hash), proof.hashes);
    step('Follow the inclusion proof to the signed root', same(root, head.root),
      same(root, head.root) ? `entry ${receipt.index} is in the log` : 'the proof does not lead to the signed root');
  } catch (err) {
    step('Verification could not finish', false, String(err && err.message ? err.message : err));
  }
  return steps;
}
