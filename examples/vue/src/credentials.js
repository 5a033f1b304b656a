// Credentials as the demo page takes them: /?uid=U&token=T&ws=PORT (the
// links `basestation serve --demo` prints), kept for this tab so that a
// reload without them still signs in.
const KEY = 'basestation.vue.creds';

export function credentials() {
  const q = new URLSearchParams(location.search);
  if (q.get('token')) {
    const c = { uid: q.get('uid') || q.get('id') || '', token: q.get('token'), ws: q.get('ws') || '' };
    try { sessionStorage.setItem(KEY, JSON.stringify(c)); } catch { /* private mode */ }
    return c;
  }
  try { return JSON.parse(sessionStorage.getItem(KEY) || 'null'); } catch { return null; }
}

export function forget() {
  try { sessionStorage.removeItem(KEY); } catch { /* ignore */ }
}

// The WebSocket listener on this page's host (the page comes from the HTTP port).
export function wsUrl(port) {
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
  const host = location.hostname.includes(':') ? `[${location.hostname}]` : location.hostname;
  return `${scheme}://${host}:${port || 8080}/ws`;
}
