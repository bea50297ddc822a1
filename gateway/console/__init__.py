"""Why: auditors, registrars, admins — and the people in the pictures — need a place to look and to
prove things for themselves, not a curl command. The console is a small static web app served by
the gateway itself at `/console` (no separate server, no CDN, no network fetch at run time: every
asset is in `static/`, the one third-party file vendored with its licence — see `static/VENDOR.md`).

It talks to the same `/v1` API as everyone else, authenticated by a server-side session
(`gateway/sessions.py`) that an API key is exchanged for at sign-in, so the key never stays in the
browser. Proofs are checked in the browser (WebCrypto SHA-256, Ed25519 by @noble/ed25519), never
taken on the server's word.

    router.py    /, /console, /console/static/*, /console/session (sign in, who am I, sign out)
    static/      index.html, console.css, console.js (ES modules, no inline script), vendor/
"""

from gateway.console.router import router

__all__ = ["router"]
