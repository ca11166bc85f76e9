// A tiny stand-in for a developer's app, served on 127.0.0.1:<free port> and
// reached by the browser only through berth (edge -> tunnel -> agent -> here).
//
//   GET  /            an HTML page with a button and a little JS
//   GET  /events      server-sent events: 3 events, 200 ms apart, then the end
//   GET  /ws          WebSocket echo (the `ws` package)
//   POST /upload      answers {"bytes": N, "sha256": hex} of the request body
//   GET  /download?n= streams N bytes (byte i = i % 251), chunked, no length
//   GET  /echo-n?i=   answers i (for many parallel requests)
//   GET  /headers     answers the request's headers as JSON (what berth forwards)
//   GET  /toss?c=...  an HTML page answered with one Set-Cookie per `c` (an app
//                     trying to plant cookies for the rest of the site)
//   GET  /attack?target=URL  a page whose attack() makes the browser send a
//                     form POST, a no-cors fetch POST and a WebSocket to URL
//                     (the cross-origin test: the page is on another user's app)
//   POST /csrf-target and WebSocket /ws?via=...: recorded in `seen` (who
//                     arrived, as which X-Berth-User, from which Origin)
import http from 'node:http';
import crypto from 'node:crypto';
import { WebSocketServer } from 'ws';

export const PAGE_TITLE = 'berth browser test app';
export const PAGE_MARKER = 'Hello from the app behind berth';

const PAGE = `<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>${PAGE_TITLE}</title></head>
<body>
<h1 id="marker">${PAGE_MARKER}</h1>
<button id="btn" type="button">Click me</button>
<p id="out">not clicked</p>
<script>
  let clicks = 0;
  document.getElementById('btn').addEventListener('click', () => {
    clicks += 1;
    document.getElementById('out').textContent = 'clicked ' + clicks;
  });
</script>
</body>
</html>
`;

// The attack page: serves on any app host; attack() aims at ?target=.
const ATTACK = `<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>a page on another app</title></head>
<body>
<iframe name="sink" id="sink" style="display:none"></iframe>
<script>
  const target = new URL(location.href).searchParams.get('target');
  window.attack = async () => {
    const out = {};
    // 1. A form POST into a hidden frame (a navigation: cookies go along).
    const form = document.createElement('form');
    form.method = 'POST';
    form.action = target + '/csrf-target?via=form';
    form.target = 'sink';
    const field = document.createElement('input');
    field.name = 'amount';
    field.value = '100';
    form.appendChild(field);
    document.body.appendChild(form);
    const loaded = new Promise((r) => document.getElementById('sink').addEventListener('load', r, { once: true }));
    form.submit();
    await loaded;
    out.form = 'submitted';
    // 2. A no-cors fetch POST with credentials (the answer stays opaque).
    try {
      const r = await fetch(target + '/csrf-target?via=nocors', {
        method: 'POST', mode: 'no-cors', credentials: 'include', body: 'amount=100',
      });
      out.nocors = r.type;
    } catch (e) {
      out.nocors = 'error ' + e;
    }
    // 3. A WebSocket: can this page read what the app sends back?
    out.ws = await new Promise((resolve) => {
      const ws = new WebSocket(target.replace(/^https:/, 'wss:') + '/ws?via=ws');
      const timer = setTimeout(() => resolve('timeout'), 5000);
      ws.onopen = () => ws.send('secret?');
      ws.onmessage = (e) => { clearTimeout(timer); ws.close(); resolve('read: ' + e.data); };
      ws.onerror = () => { clearTimeout(timer); resolve('refused'); };
    });
    return out;
  };
</script>
</body>
</html>
`;

/** The byte pattern /download serves: byte i is i % 251 (a prime, so it never lines up with chunks). */
export function patternBytes(n) {
  const buf = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) buf[i] = i % 251;
  return buf;
}

/** Starts the app on 127.0.0.1 and a free port; resolves to { port, seen, close }. */
export async function startApp() {
  // What reached the app from the cross-origin test's page.
  const seen = [];
  const record = (req, via) =>
    seen.push({
      via,
      method: req.method,
      user: req.headers['x-berth-user'] ?? null,
      origin: req.headers.origin ?? null,
      site: req.headers['sec-fetch-site'] ?? null,
      host: req.headers['x-forwarded-host'] ?? null,
    });
  // Every request to /inspect-me: { method, path, headers, body }.
  const inspected = [];
  const wss = new WebSocketServer({ noServer: true });
  wss.on('connection', (ws) => {
    ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
  });

  const server = http.createServer((req, res) => {
    const url = new URL(req.url, 'http://app.invalid');
    if (req.method === 'GET' && url.pathname === '/') {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end(PAGE);
    } else if (req.method === 'GET' && url.pathname === '/events') {
      res.writeHead(200, {
        'content-type': 'text/event-stream',
        'cache-control': 'no-cache',
      });
      // A comment first, so the stream's headers and first bytes leave at once.
      res.write(': hello\n\n');
      let n = 0;
      const timer = setInterval(() => {
        n += 1;
        res.write(`id: ${n}\nevent: tick\ndata: event ${n} at ${Date.now()}\n\n`);
        if (n === 3) {
          clearInterval(timer);
          // Tell EventSource not to reconnect soon; the page closes it anyway.
          res.end('retry: 60000\n\n');
        }
      }, 200);
      req.on('close', () => clearInterval(timer));
    } else if (req.method === 'POST' && url.pathname === '/upload') {
      const hash = crypto.createHash('sha256');
      let bytes = 0;
      req.on('data', (chunk) => {
        bytes += chunk.length;
        hash.update(chunk);
      });
      req.on('end', () => {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ bytes, sha256: hash.digest('hex') }));
      });
    } else if (req.method === 'GET' && url.pathname === '/download') {
      const n = Number(url.searchParams.get('n') ?? '0');
      res.writeHead(200, {
        'content-type': 'application/octet-stream',
        'cache-control': 'no-store',
      });
      const chunkSize = 64 * 1024;
      let sent = 0;
      const pump = () => {
        while (sent < n) {
          const len = Math.min(chunkSize, n - sent);
          const chunk = Buffer.allocUnsafe(len);
          for (let i = 0; i < len; i++) chunk[i] = (sent + i) % 251;
          sent += len;
          if (!res.write(chunk)) {
            res.once('drain', pump);
            return;
          }
        }
        res.end();
      };
      pump();
    } else if (url.pathname === '/favicon.ico') {
      // Chromium asks for it; a 404 would show up as a console error.
      res.writeHead(204);
      res.end();
    } else if (url.pathname === '/echo-n') {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end(String(url.searchParams.get('i')));
    } else if (req.method === 'GET' && url.pathname === '/toss') {
      res.setHeader('set-cookie', url.searchParams.getAll('c'));
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end(`<!doctype html><html lang="en"><head><meta charset="utf-8"><title>toss</title></head><body><h1 id="marker">${PAGE_MARKER}</h1></body></html>`);
    } else if (req.method === 'GET' && url.pathname === '/attack') {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end(ATTACK);
    } else if (req.method === 'POST' && url.pathname === '/csrf-target') {
      record(req, url.searchParams.get('via'));
      req.resume();
      req.on('end', () => {
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.end('transferred\n');
      });
    } else if (url.pathname === '/inspect-me') {
      // What reached the app, for the inspector's test (replays included).
      let body = '';
      req.on('data', (c) => (body += c));
      req.on('end', () => {
        inspected.push({ method: req.method, path: req.url, headers: req.headers, body });
        res.writeHead(200, { 'content-type': 'application/json', 'x-app-says': 'inspected' });
        res.end(JSON.stringify({ n: inspected.length, got: body }));
      });
    } else if (url.pathname === '/headers') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ method: req.method, httpVersion: req.httpVersion, headers: req.headers }));
    } else {
      res.writeHead(404, { 'content-type': 'text/plain' });
      res.end('app: no such path\n');
    }
  });

  server.on('upgrade', (req, socket, head) => {
    const url = new URL(req.url, 'http://app.invalid');
    if (url.searchParams.has('via')) record(req, url.searchParams.get('via'));
    if (url.pathname !== '/ws') {
      socket.destroy();
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => wss.emit('connection', ws, req));
  });

  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const { port } = server.address();
  return {
    port,
    seen,
    inspected,
    close: () =>
      new Promise((resolve) => {
        for (const c of wss.clients) c.terminate();
        wss.close();
        server.closeAllConnections?.();
        server.close(() => resolve());
      }),
  };
}
