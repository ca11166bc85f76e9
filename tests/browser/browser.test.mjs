// Real-browser end-to-end test of `berth dev`: Debian's Chromium, driven by
// playwright-core, loads an app through berth's edge, tunnel and agent, over
// HTTP/2 and HTTP/1.1, with WebSockets, server-sent events, uploads and
// downloads, trusting berth's local CA the way a user would (the CA is added to
// the NSS database in the browser's $HOME; no certificate errors are ignored).
//
// Run by tests/browser/run.sh (which installs Chromium, certutil and the npm
// packages and builds berth). Environment:
//   BERTH_BIN   berth binary (default: target/debug/berth)
//   CHROMIUM    Chromium binary (default: /usr/bin/chromium)
//   BERTH_BROWSER_DEBUG=1  echo berth's log to stderr as it runs
//   BERTH_SCREENSHOTS=DIR  save screenshots of the main pages there (the
//                          README's come from docs/screenshots)
// Prints one line per check and, last, `N passed, M failed`; exits non-zero on
// any failure. The whole run is cut off after 120 s.
import { chromium } from 'playwright-core';
import { spawn, execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startApp, patternBytes, PAGE_MARKER, PAGE_TITLE } from './app.mjs';
import { runDashboardJourney } from './dashboard_journey.mjs';
import { inspectorTests } from './inspector.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '..', '..');
const BERTH = process.env.BERTH_BIN || path.join(ROOT, 'target', 'debug', 'berth');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const DEBUG = process.env.BERTH_BROWSER_DEBUG === '1';
const RUN_TIMEOUT_MS = 180_000;
const SCREENSHOTS = process.env.BERTH_SCREENSHOTS || '';
const TEST_TIMEOUT_MS = 30_000;

// Chromium as the machine notes say it runs here: no network beyond loopback.
// Playwright adds --headless and a fresh temporary --user-data-dir itself.
const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

const UPLOAD_BYTES = 5 * 1024 * 1024;
const DOWNLOAD_BYTES = 20 * 1024 * 1024;
const WS_MESSAGES = 100;

// ---------------------------------------------------------------- state --
const tempDirs = [];
const browsers = [];
let berth = null; // child process
let berthLog = ''; // stdout + stderr, ANSI colours removed
let app = null;
let edge = null; // a regional `berth edge`, when a test starts one
let carolAgent = null; // a second user's `berth agent`, when a test starts one
let wakeAgent = null; // the `berth agent` the wake webhook starts
let wakeHook = null; // the wake webhook receiver: { server, port, calls, start }
const WAKE_SECRET = 'browser-wake-secret-0123456789';
const consoleProblems = []; // console errors / page errors on pages that should be clean

function tempDir(prefix) {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  tempDirs.push(d);
  return d;
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

const stripAnsi = (s) => s.replace(/\x1b\[[0-9;]*m/g, '');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function withTimeout(promise, ms, what) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: timed out after ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

function assert(cond, message) {
  if (!cond) throw new Error(message);
}

// ---------------------------------------------------------------- berth --
async function startBerth(dataDir, port) {
  const child = spawn(
    BERTH,
    ['dev', '--data-dir', dataDir, '--listen', `127.0.0.1:${port}`, '--admin-listen', 'off'],
    // The test signs in from one address dozens of times a minute, far past
    // the brute-force limit meant for people (10 at once, then 10 a minute).
    {
      cwd: dataDir,
      env: {
        ...process.env, NO_COLOR: '1', BERTH_LIMITS_LOGIN_BURST: '1000', BERTH_LIMITS_LOGIN_PER_MINUTE: '1000',
        // Wake on visit, calling the test's receiver (startWakeHook).
        ...(wakeHook ? { BERTH_WAKE_WEBHOOK_URL: `http://127.0.0.1:${wakeHook.port}/wake`, BERTH_WAKE_WEBHOOK_SECRET: WAKE_SECRET } : {}),
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  berth = child;
  let stdout = '';
  const onData = (which) => (buf) => {
    const s = stripAnsi(buf.toString());
    berthLog += s;
    if (which === 'stdout') stdout += s;
    if (DEBUG) process.stderr.write(`[berth ${which}] ${s}`);
  };
  child.stdout.on('data', onData('stdout'));
  child.stderr.on('data', onData('stderr'));
  await withTimeout(
    new Promise((resolve, reject) => {
      // The banner's last line is the curl command (the "local CA" line
      // also mentions curl, so match the command itself).
      const check = () => {
        if (stdout.includes('\n  curl ')) resolve();
      };
      child.stdout.on('data', check);
      child.once('exit', (code, sig) =>
        reject(new Error(`berth exited before its banner (code ${code}, signal ${sig}):\n${berthLog}`)),
      );
      child.once('error', reject);
      check();
    }),
    30_000,
    'berth banner',
  );
  return stdout;
}

async function stopBerth() {
  if (!berth || berth.exitCode !== null || berth.signalCode !== null) return;
  const exited = new Promise((r) => berth.once('exit', r));
  berth.kill('SIGTERM');
  const done = await Promise.race([exited.then(() => true), sleep(10_000).then(() => false)]);
  if (!done) {
    console.error('# berth did not exit within 10 s of SIGTERM; sending SIGKILL');
    berth.kill('SIGKILL');
    await exited;
  }
}

/** One HTTPS GET from Node (not the browser), trusting berth's CA; used only to wait for the tunnel. */
function nodeGet(host, port, ca, headers) {
  return new Promise((resolve, reject) => {
    const req = https.request(
      { host: '127.0.0.1', port, servername: host, path: '/', ca, headers: { host: `${host}:${port}`, ...headers } },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode));
      },
    );
    req.on('error', reject);
    req.setTimeout(5000, () => req.destroy(new Error('timeout')));
    req.end();
  });
}

/** One JSON API call from Node to berth's control host, trusting its CA. */
function nodeApi(port, ca, token, method, apiPath, body) {
  return new Promise((resolve, reject) => {
    const data = body ? Buffer.from(JSON.stringify(body)) : null;
    const req = https.request(
      {
        host: '127.0.0.1',
        port,
        servername: 'berth.localhost',
        path: '/api/v1' + apiPath,
        method,
        ca,
        headers: {
          host: `berth.localhost:${port}`,
          authorization: `Bearer ${token}`,
          ...(data ? { 'content-type': 'application/json', 'content-length': data.length } : {}),
        },
      },
      (res) => {
        let text = '';
        res.on('data', (c) => (text += c));
        res.on('end', () => resolve({ status: res.statusCode, body: text ? JSON.parse(text) : null }));
      },
    );
    req.on('error', reject);
    req.setTimeout(5000, () => req.destroy(new Error('timeout')));
    req.end(data);
  });
}

/** Saves a screenshot of `page` as DIR/name.png when BERTH_SCREENSHOTS is set. */
async function shot(page, name) {
  if (!SCREENSHOTS) return;
  fs.mkdirSync(SCREENSHOTS, { recursive: true });
  await page.setViewportSize({ width: 1100, height: 720 });
  await page.screenshot({ path: path.join(SCREENSHOTS, `${name}.png`) });
}

/** Signs in on the sign-in form the page is on and waits for `landing`. */
async function signIn(page, username, password, landing) {
  await page.fill('input[name=username]', username);
  await page.fill('input[name=password]', password);
  const [response] = await Promise.all([
    page.waitForNavigation({ timeout: 15_000 }),
    page.click('button[type=submit]'),
  ]);
  // A refusal (wrong password, 429 over the limit) is a page of its own:
  // say what it said rather than wait for a landing that never comes.
  const status = response?.status() ?? 0;
  if (status >= 400) {
    const text = (await page.textContent('body')).replace(/\s+/g, ' ').trim().slice(0, 200);
    throw new Error(`signing in as ${username}: ${status} ${text}`);
  }
  await page.waitForURL(landing, { timeout: 15_000 });
}

// ---------------------------------------------------------------- trust --
/** Makes $HOME/.pki/nssdb (Chromium's user trust store on Linux), optionally trusting ca.pem. */
function makeNssHome(caPem) {
  const home = tempDir('berth-browser-home-');
  const db = path.join(home, '.pki', 'nssdb');
  fs.mkdirSync(db, { recursive: true });
  execFileSync('certutil', ['-d', `sql:${db}`, '-N', '--empty-password'], { stdio: 'pipe' });
  if (caPem) {
    // -t "C,,": a trusted CA for issuing server (TLS) certificates.
    execFileSync('certutil', ['-d', `sql:${db}`, '-A', '-t', 'C,,', '-n', 'berth-local-ca', '-i', caPem], {
      stdio: 'pipe',
    });
    const list = execFileSync('certutil', ['-d', `sql:${db}`, '-L'], { encoding: 'utf8' });
    assert(list.includes('berth-local-ca'), `certutil -L does not list the CA:\n${list}`);
  }
  return home;
}

async function launch(home, extraArgs = []) {
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [...CHROMIUM_ARGS, ...extraArgs],
    env: { ...process.env, HOME: home },
    timeout: 30_000,
  });
  browsers.push(browser);
  return browser;
}

/** A page in a new context; console errors and page errors are recorded when `watch`. */
async function newPage(browser, headers, watch = true, label = '') {
  const context = await browser.newContext(headers ? { extraHTTPHeaders: headers } : {});
  const page = await context.newPage();
  if (watch) {
    page.on('console', (m) => {
      if (m.type() === 'error' || m.type() === 'warning') {
        consoleProblems.push(`${label} console.${m.type()}: ${m.text()} (${m.location()?.url ?? ''})`);
      }
    });
    page.on('pageerror', (e) => consoleProblems.push(`${label} pageerror: ${e.message}`));
  }
  return { context, page };
}

// ---------------------------------------------- in-page checks (browser) --
async function uploadFromPage(page, n) {
  return page.evaluate(async (n) => {
    const data = new Uint8Array(n);
    for (let i = 0; i < n; i += 65536) crypto.getRandomValues(data.subarray(i, Math.min(n, i + 65536)));
    const digest = await crypto.subtle.digest('SHA-256', data);
    const expected = [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, '0')).join('');
    const t0 = performance.now();
    const res = await fetch('/upload', {
      method: 'POST',
      body: data,
      headers: { 'content-type': 'application/octet-stream' },
    });
    const body = await res.json();
    return { status: res.status, expected, got: body, ms: performance.now() - t0 };
  }, n);
}

async function downloadFromPage(page, n) {
  return page.evaluate(async (n) => {
    const t0 = performance.now();
    const res = await fetch('/download?n=' + n, { cache: 'no-store' });
    const reader = res.body.getReader();
    const parts = [];
    let bytes = 0;
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      bytes += value.length;
      parts.push(value);
    }
    const all = new Uint8Array(bytes);
    let off = 0;
    for (const p of parts) {
      all.set(p, off);
      off += p.length;
    }
    const digest = await crypto.subtle.digest('SHA-256', all);
    const sha256 = [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, '0')).join('');
    return { status: res.status, bytes, sha256, ms: performance.now() - t0 };
  }, n);
}

async function sseFromPage(page) {
  return page.evaluate(
    () =>
      new Promise((resolve, reject) => {
        const es = new EventSource('/events');
        const got = [];
        const t0 = performance.now();
        const timer = setTimeout(() => {
          es.close();
          reject(new Error('EventSource: only ' + got.length + ' events after 10 s'));
        }, 10_000);
        es.addEventListener('tick', (e) => {
          got.push({ id: e.lastEventId, data: e.data, at: performance.now() - t0 });
          if (got.length === 3) {
            clearTimeout(timer);
            es.close();
            resolve(got);
          }
        });
        es.onerror = () => {
          // The app ends the stream after event 3; an error before that is real.
          if (got.length < 3 && es.readyState === EventSource.CLOSED) {
            clearTimeout(timer);
            reject(new Error('EventSource failed after ' + got.length + ' events'));
          }
        };
      }),
  );
}

async function wsFromPage(page, count) {
  return page.evaluate(
    (count) =>
      new Promise((resolve, reject) => {
        const ws = new WebSocket(location.origin.replace(/^https:/, 'wss:') + '/ws');
        ws.binaryType = 'arraybuffer';
        const t0 = performance.now();
        let received = 0;
        const timer = setTimeout(() => reject(new Error('WebSocket: ' + received + ' echoes after 15 s')), 15_000);
        const message = (i) => (i % 10 === 9 ? new Uint8Array([i, 255 - i, 0, 7]) : 'message ' + i + ' ' + 'x'.repeat(i * 10));
        ws.onopen = () => {
          for (let i = 0; i < count; i++) ws.send(message(i));
        };
        ws.onmessage = (e) => {
          const want = message(received);
          let same;
          if (typeof want === 'string') same = e.data === want;
          else {
            const got = new Uint8Array(e.data);
            same = got.length === want.length && got.every((b, j) => b === want[j]);
          }
          if (!same) {
            clearTimeout(timer);
            ws.close();
            reject(new Error('WebSocket: echo ' + received + ' differs: ' + String(e.data).slice(0, 80)));
            return;
          }
          received += 1;
          if (received === count) {
            clearTimeout(timer);
            ws.close(1000, 'done');
            resolve({ received, ms: performance.now() - t0, protocol: ws.protocol, extensions: ws.extensions });
          }
        };
        ws.onerror = () => {
          clearTimeout(timer);
          reject(new Error('WebSocket error after ' + received + ' echoes (readyState ' + ws.readyState + ')'));
        };
      }),
    count,
  );
}

const navProtocol = (page) =>
  page.evaluate(() => performance.getEntriesByType('navigation')[0]?.nextHopProtocol ?? '(none)');

// ---------------------------------------------------------------- runner --
const results = [];
async function test(name, fn) {
  const t0 = Date.now();
  try {
    const note = await withTimeout(Promise.resolve().then(fn), TEST_TIMEOUT_MS, name);
    const ms = Date.now() - t0;
    results.push({ name, ok: true, ms });
    console.log(`ok ${results.length} - ${name} (${ms} ms)${note ? ' # ' + note : ''}`);
  } catch (e) {
    const ms = Date.now() - t0;
    results.push({ name, ok: false, ms, error: e });
    console.log(`not ok ${results.length} - ${name} (${ms} ms)`);
    console.log(
      String(e?.stack || e)
        .split('\n')
        .map((l) => '#   ' + l)
        .join('\n'),
    );
  }
}

async function cleanup() {
  for (const b of browsers.splice(0)) await b.close().catch(() => {});
  if (edge && edge.exitCode === null) edge.kill('SIGKILL');
  if (carolAgent && carolAgent.exitCode === null) carolAgent.kill('SIGKILL');
  if (wakeAgent && wakeAgent.exitCode === null) wakeAgent.kill('SIGKILL');
  if (wakeHook) wakeHook.server.close();
  await stopBerth().catch((e) => console.error('# stopping berth:', e));
  if (app) await app.close().catch(() => {});
  for (const d of tempDirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
}

function summary() {
  const passed = results.filter((r) => r.ok).length;
  const failed = results.length - passed;
  console.log(`${passed} passed, ${failed} failed`);
  return failed;
}

/**
 * The wake webhook's receiver: records each call and whether its
 * Berth-Signature (HMAC-SHA256 of "t.body" with the secret) holds, and runs
 * `wakeHook.start` (set by the test: it starts a real `berth agent`).
 */
async function startWakeHook() {
  const calls = [];
  const hook = { calls, start: null, port: 0, server: null };
  hook.server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      const sig = String(req.headers['berth-signature'] || '');
      const t = (sig.match(/t=(\d+)/) || [])[1];
      const v1 = (sig.match(/v1=([0-9a-f]+)/) || [])[1];
      const want = crypto.createHmac('sha256', WAKE_SECRET).update(`${t}.${body}`).digest('hex');
      calls.push({ path: req.url, event: req.headers['berth-event'], body: JSON.parse(body || 'null'), signed: v1 === want });
      if (hook.start) hook.start();
      res.writeHead(204);
      res.end();
    });
  });
  await new Promise((r) => hook.server.listen(0, '127.0.0.1', r));
  hook.port = hook.server.address().port;
  return hook;
}

// ------------------------------------------------------------------ main --
async function main() {
  const tStart = Date.now();
  assert(fs.existsSync(BERTH), `no berth binary at ${BERTH} (run cargo build)`);
  assert(fs.existsSync(CHROMIUM), `no Chromium at ${CHROMIUM} (apt-get install chromium)`);

  // The dashboard from an empty data dir to an app shared on a second agent
  // (its own berth dev; BERTH_BROWSER_ONLY=dashboard runs just this).
  const journey = () => runDashboardJourney({ BERTH, test, assert, sleep, tempDir, freePort, launch, makeNssHome, signIn, DEBUG });
  if (process.env.BERTH_BROWSER_ONLY === 'dashboard') return journey();

  app = await startApp();
  wakeHook = await startWakeHook();
  const dataDir = tempDir('berth-browser-data-');
  const port = await freePort();
  const banner = await startBerth(dataDir, port);
  const adminPassword = (banner.match(/admin password\s+(\S+)/) ?? [])[1];
  assert(adminPassword, `the banner shows no admin password:\n${banner}`);
  const token = fs.readFileSync(path.join(dataDir, 'admin-token'), 'utf8').trim();
  const caPem = path.join(dataDir, 'ca.pem');
  const ca = fs.readFileSync(caPem);
  assert(token.startsWith('berth_api_'), 'admin-token does not hold a berth_api_ token');

  const appHost = `${app.port}--main--dev--admin.berth.localhost`;
  const appUrl = `https://${appHost}:${port}`;
  const auth = { Authorization: `Bearer ${token}` };

  // The banner may come before the agent's tunnel is up: wait until berth
  // serves the app (from Node, trusting the CA), so no check races the agent.
  const readyBy = Date.now() + 15_000;
  for (;;) {
    const status = await nodeGet(appHost, port, ca, auth).catch((e) => String(e));
    if (status === 200) break;
    if (Date.now() > readyBy) throw new Error(`berth never served the app (last: ${status})\n${berthLog}`);
    await sleep(100);
  }
  console.log(`# berth ready on 127.0.0.1:${port} in ${Date.now() - tStart} ms; app on 127.0.0.1:${app.port}`);

  // Trust: berth's CA in an NSS database under a temporary $HOME.
  const trustedHome = makeNssHome(caPem);
  const h2 = await launch(trustedHome);
  const h1 = await launch(trustedHome, ['--disable-http2']);
  console.log(`# Chromium ${h2.version()} (playwright-core), launched twice in ${Date.now() - tStart} ms since start`);

  const main2 = await newPage(h2, auth, true, '[h2]');
  const main1 = await newPage(h1, auth, true, '[h1]');
  let pageHeaders = null;

  await test('page loads over HTTPS, CA trusted via NSS (no certificate bypass), HTTP/2', async () => {
    const res = await main2.page.goto(appUrl + '/', { waitUntil: 'load' });
    assert(res, 'no response');
    assert(res.status() === 200, `status ${res.status()}`);
    assert((await main2.page.title()) === PAGE_TITLE, `title ${await main2.page.title()}`);
    assert((await main2.page.textContent('#marker')) === PAGE_MARKER, 'app content missing');
    await main2.page.click('#btn');
    await main2.page.waitForFunction(() => document.getElementById('out').textContent === 'clicked 1');
    const sec = await res.securityDetails();
    assert(sec, 'no TLS security details');
    pageHeaders = await res.allHeaders();
    return `${sec.protocol}, issuer "${sec.issuer}", subject "${sec.subjectName}"`;
  });

  await test('navigation nextHopProtocol is h2 (ALPN)', async () => {
    const p = await navProtocol(main2.page);
    assert(p === 'h2', `nextHopProtocol ${p}`);
  });

  await test('with --disable-http2 the page loads over http/1.1', async () => {
    const res = await main1.page.goto(appUrl + '/', { waitUntil: 'load' });
    assert(res && res.status() === 200, `status ${res?.status()}`);
    assert((await main1.page.textContent('#marker')) === PAGE_MARKER, 'app content missing');
    const p = await navProtocol(main1.page);
    assert(p === 'http/1.1', `nextHopProtocol ${p}`);
  });

  for (const [label, { page }] of [['h2', main2], ['http/1.1', main1]]) {
    await test(`[${label}] fetch() upload of 5 MiB: app sees every byte (sha256)`, async () => {
      const r = await uploadFromPage(page, UPLOAD_BYTES);
      assert(r.status === 200, `status ${r.status}`);
      assert(r.got.bytes === UPLOAD_BYTES, `app got ${r.got.bytes} bytes`);
      assert(r.got.sha256 === r.expected, `sha256 ${r.got.sha256} != ${r.expected}`);
      return `${Math.round(r.ms)} ms`;
    });

    await test(`[${label}] fetch() streamed download of 20 MiB: every byte arrives (sha256)`, async () => {
      const want = crypto.createHash('sha256').update(patternBytes(DOWNLOAD_BYTES)).digest('hex');
      const r = await downloadFromPage(page, DOWNLOAD_BYTES);
      assert(r.status === 200, `status ${r.status}`);
      assert(r.bytes === DOWNLOAD_BYTES, `got ${r.bytes} bytes`);
      assert(r.sha256 === want, `sha256 ${r.sha256} != ${want}`);
      return `${Math.round(r.ms)} ms`;
    });

    await test(`[${label}] EventSource gets 3 events in order, as they are sent (not buffered)`, async () => {
      const got = await sseFromPage(page);
      assert(got.length === 3, `${got.length} events`);
      got.forEach((e, i) => {
        assert(e.id === String(i + 1), `event ${i} has id ${e.id}`);
        assert(e.data.startsWith(`event ${i + 1} `), `event ${i} data ${e.data}`);
      });
      // The app sends them 200 ms apart: a buffering proxy would deliver them together.
      const gaps = [got[1].at - got[0].at, got[2].at - got[1].at];
      assert(gaps.every((g) => g > 100), `events arrived bunched: gaps ${gaps.map(Math.round)} ms`);
      return `arrived at ${got.map((e) => Math.round(e.at)).join(', ')} ms`;
    });

    await test(`[${label}] WebSocket echoes ${WS_MESSAGES} messages (text and binary) in order`, async () => {
      const before = berthLog.length;
      const r = await wsFromPage(page, WS_MESSAGES);
      assert(r.received === WS_MESSAGES, `${r.received} echoes`);
      // berth's access log names the method: CONNECT is RFC 8441 (WebSocket over h2).
      await sleep(100);
      const lines = berthLog.slice(before).split('\n').filter((l) => l.includes('berth::access') && l.includes('path=/ws'));
      const method = /method=(\S+)/.exec(lines.at(-1) ?? '')?.[1] ?? '?';
      if (label === 'h2') assert(method === 'CONNECT', `expected extended CONNECT (RFC 8441), berth logged ${method}: ${lines}`);
      else assert(method === 'GET', `expected GET Upgrade, berth logged ${method}`);
      return `${Math.round(r.ms)} ms, handshake ${method === 'CONNECT' ? 'extended CONNECT over h2' : 'GET Upgrade over http/1.1'}`;
    });
  }

  await test('[h2] 50 parallel fetches from the page all succeed', async () => {
    const r = await main2.page.evaluate(async () => {
      const t0 = performance.now();
      const got = await Promise.all(
        Array.from({ length: 50 }, (_, i) =>
          fetch('/echo-n?i=' + i, { cache: 'no-store' }).then(async (r) => [r.status, await r.text()]),
        ),
      );
      return { got, ms: performance.now() - t0 };
    });
    r.got.forEach(([status, text], i) => assert(status === 200 && text === String(i), `request ${i}: ${status} ${text}`));
    return `${Math.round(r.ms)} ms`;
  });

  await test('short form {port}--{workspace}--{user} works while the workspace has one agent', async () => {
    const { context, page } = await newPage(h2, auth, true, '[short]');
    try {
      const res = await page.goto(`https://${app.port}--dev--admin.berth.localhost:${port}/`);
      assert(res && res.status() === 200, `status ${res?.status()}`);
      assert((await page.textContent('#marker')) === PAGE_MARKER, 'app content missing');
    } finally {
      await context.close();
    }
  });

  for (const [label, { page }] of [['h2', main2], ['http/1.1', main1]]) {
    await test(`[${label}] the app never sees the berth token; X-Forwarded-* are set`, async () => {
      const r = await page.evaluate(async () => (await fetch('/headers')).json());
      const h = r.headers;
      assert(!('authorization' in h), `app saw Authorization: ${h.authorization}`);
      assert(!('berth-token' in h), 'app saw Berth-Token');
      assert(h['x-forwarded-proto'] === 'https', `x-forwarded-proto ${h['x-forwarded-proto']}`);
      assert(h['x-forwarded-host'] === appHost, `x-forwarded-host ${h['x-forwarded-host']}`);
      assert(h.host === `${appHost}:${port}`, `host ${h.host}: the app must see the port it was addressed on`);
      return `Host ${h.host}, X-Forwarded-For ${h['x-forwarded-for']}, X-Berth-User ${h['x-berth-user']}`;
    });
  }
  await test('Berth-Token header also works, for the page, EventSource and WebSocket', async () => {
    const { context, page } = await newPage(h2, { 'Berth-Token': token }, true, '[berth-token]');
    try {
      const res = await page.goto(appUrl + '/');
      assert(res && res.status() === 200, `status ${res?.status()}`);
      const events = await sseFromPage(page);
      assert(events.length === 3, 'EventSource');
      const ws = await wsFromPage(page, 10);
      assert(ws.received === 10, 'WebSocket');
    } finally {
      await context.close();
    }
  });

  await test('without a session: sent to sign in, signs in with a password, lands on the app', async () => {
    const { context, page } = await newPage(h2, null, false);
    try {
      const res = await page.goto(appUrl + '/?from=browser');
      assert(res, 'no response');
      const signinUrl = page.url();
      assert(
        signinUrl.startsWith(`https://berth.localhost:${port}/signin?return_to=`),
        `not sent to sign-in: ${signinUrl}`,
      );
      assert(!(await page.textContent('body')).includes(PAGE_MARKER), 'the app content leaked');
      await page.fill('input[name=username]', 'admin');
      await page.fill('input[name=password]', adminPassword);
      await Promise.all([page.waitForURL(`${appUrl}/?from=browser`), page.click('button[type=submit]')]);
      const text = await page.textContent('body');
      assert(text.includes(PAGE_MARKER), `not on the app after sign-in: ${page.url()} ${text.slice(0, 200)}`);
      // The session cookie covers the page's own requests too (no token sent).
      const sub = await page.evaluate(async () => (await fetch('/download?n=10')).status);
      assert(sub === 200, `fetch after sign-in: ${sub}`);
      const cookies = await context.cookies();
      const appCookie = cookies.find((c) => c.name === '__Host-berth_app');
      assert(appCookie && appCookie.httpOnly && appCookie.secure && appCookie.sameSite === 'Lax' && appCookie.path === '/',
        `__Host-berth_app cookie: ${JSON.stringify(appCookie)}`);
      assert(appCookie.domain === appHost, `__Host-berth_app must be host-only: ${appCookie.domain}`);
      assert(!cookies.some((c) => c.name === '__Host-berth_state'), 'the sign-in state was not cleared');
      return `signed in via ${new URL(signinUrl).pathname}`;
    } finally {
      await context.close();
    }
  });

  await test('the dashboard: sign in, see the port, share it publicly with a click', async () => {
    const { context, page } = await newPage(h2, null, false);
    try {
      await page.goto(`https://berth.localhost:${port}/`);
      assert(page.url().startsWith(`https://berth.localhost:${port}/signin`), `not sent to sign-in: ${page.url()}`);
      await page.fill('input[name=username]', 'admin');
      await page.fill('input[name=password]', adminPassword);
      await Promise.all([page.waitForURL(`https://berth.localhost:${port}/`), page.click('button[type=submit]')]);
      const row = page.locator(`tr[data-port="${app.port}"]`);
      await row.waitFor({ timeout: 10_000 });
      await row.locator('select.level').selectOption('public');
      await page.click('#confirm-yes');
      await page.waitForFunction(
        (p) => document.querySelector('#msg').textContent.includes(`Port ${p} is now public`),
        app.port,
        { timeout: 10_000 },
      );
      // Anyone may open it now: a fresh context with no credentials.
      const anon = await newPage(h2, null, false);
      try {
        const res = await anon.page.goto(appUrl + '/');
        assert(res.status() === 200, `anonymous after sharing: ${res.status()}`);
        assert((await anon.page.textContent('body')).includes(PAGE_MARKER), 'app content');
      } finally {
        await anon.context.close();
      }
      // A share that ends, from the same row: signed-in users for an hour
      // (organization is refused here: admin has no organization).
      await row.locator('select.ends').selectOption('3600');
      await row.locator('select.level').selectOption('authenticated');
      await page.waitForFunction(
        (p) => document.querySelector('#msg').textContent.includes(`Port ${p} is now authenticated, for 1h`),
        app.port,
        { timeout: 10_000 },
      );
      await row.locator('select.ends').selectOption('');
      // Back to private from the dashboard.
      await row.locator('select.level').selectOption('owner');
      await page.waitForFunction(
        (p) => document.querySelector('#msg').textContent.includes(`Port ${p} is now owner`),
        app.port,
        { timeout: 10_000 },
      );
      return 'shared and unshared from the dashboard';
    } finally {
      await context.close();
    }
  });

  const api = (method, apiPath, body) => nodeApi(port, ca, token, method, apiPath, body);
  const shareUrl = `/workspaces/admin/dev/agents/main/ports/${app.port}/share`;

  await test('another user: bob signs in and opens a port shared with signed-in users, not an owner-only one', async () => {
    const made = await api('POST', '/users', {
      username: 'bob', email: 'bob@example.com', password: 'bob-password', role: 'member',
    });
    assert(made.status === 201, `create bob: ${made.status} ${JSON.stringify(made.body)}`);
    const shared = await api('PUT', shareUrl, { level: 'authenticated' });
    assert(shared.status === 200, `share: ${shared.status}`);
    const { context, page } = await newPage(h2, null, false);
    try {
      await page.goto(appUrl + '/?as=bob');
      assert(page.url().startsWith(`https://berth.localhost:${port}/signin`), `not sent to sign-in: ${page.url()}`);
      await shot(page, 'signin');
      await signIn(page, 'bob', 'bob-password', `${appUrl}/?as=bob`);
      assert((await page.textContent('body')).includes(PAGE_MARKER), 'bob does not see the app');
      const seen = await page.evaluate(async () => (await fetch('/headers')).json());
      assert(seen.headers['x-berth-user'] === 'bob', `X-Berth-User: ${seen.headers['x-berth-user']}`);
      // Back to owner-only: bob gets the not-found page, like for a private workspace.
      const unshared = await api('DELETE', shareUrl);
      assert(unshared.status === 204, `unshare: ${unshared.status}`);
      const res = await page.goto(appUrl + '/?as=bob');
      assert(res.status() === 404, `bob after unshare: ${res.status()}`);
      assert(!(await page.textContent('body')).includes(PAGE_MARKER), 'the app content leaked');
      await shot(page, 'not-found');
      return 'authenticated: 200 as bob; owner: 404';
    } finally {
      await context.close();
    }
  });

  await test('links: create a 2-hour link in the dashboard, open it with no account, revoke it: cut off within 5 s', async () => {
    const { context, page } = await newPage(h2, null, false);
    const anon = await newPage(h2, null, false);
    try {
      await page.goto(`https://berth.localhost:${port}/`);
      await signIn(page, 'admin', adminPassword, `https://berth.localhost:${port}/`);
      const row = page.locator(`tr[data-port="${app.port}"]`);
      await row.waitFor({ timeout: 10_000 });
      await row.locator('select.ttl').selectOption({ label: '2 hours' });
      await row.locator('button.mklink').click();
      const linkEl = page.locator('#new-link');
      await linkEl.waitFor({ timeout: 10_000 });
      const link = (await linkEl.textContent()).trim();
      assert(link.startsWith(appUrl + '/?berth_share=berth_link_'), `link: ${link}`);
      await shot(page, 'dashboard');
      // The visitor: the app, and the token gone from the address bar.
      const res = await anon.page.goto(link);
      assert(res.status() === 200, `visitor: ${res.status()}`);
      assert(!anon.page.url().includes('berth_share'), `token still in the URL: ${anon.page.url()}`);
      assert((await anon.page.textContent('body')).includes(PAGE_MARKER), 'visitor does not see the app');
      // Revoke from the dashboard; the visitor's next request is refused.
      await page.locator('[data-revoke]').first().click();
      await page.waitForFunction(() => document.querySelector('#msg').textContent.includes('Link revoked'), null, {
        timeout: 10_000,
      });
      const t0 = Date.now();
      let status = 200;
      while (Date.now() - t0 < 5000) {
        status = (await anon.page.reload()).status();
        if (status === 401) break;
        await sleep(100);
      }
      assert(status === 401, `visitor after revocation: ${status}`);
      return `refused ${Date.now() - t0} ms after the click`;
    } finally {
      await anon.context.close();
      await context.close();
    }
  });

  await test('CORS: a page on one of admin\'s apps fetches another with credentials; from another user\'s host the browser refuses', async () => {
    const named = await api('PUT', '/workspaces/admin/dev/agents/main/apps/docs', { port: app.port });
    assert(named.status === 200, `name the port: ${named.status} ${JSON.stringify(named.body)}`);
    const docs = `https://docs--main--dev--admin.berth.localhost:${port}`;
    const { context, page } = await newPage(h2, null, false);
    try {
      // Sign in once, then pick up the app cookie on each host by visiting it.
      await page.goto(docs + '/');
      await signIn(page, 'admin', adminPassword, docs + '/');
      await page.goto(appUrl + '/');
      assert((await page.textContent('body')).includes(PAGE_MARKER), 'not on the app');
      const call = (url) =>
        page.evaluate(async (url) => {
          try {
            const r = await fetch(url, { credentials: 'include' });
            return { status: r.status, user: (await r.json()).headers['x-berth-user'] };
          } catch (e) {
            return { error: String(e) };
          }
        }, url);
      const own = await call(docs + '/headers');
      assert(own.status === 200 && own.user === 'admin', `same owner: ${JSON.stringify(own)}`);
      // Carol's host (nothing there: the 404 page is enough to be that origin).
      await page.goto(`https://5173--main--dev--carol.berth.localhost:${port}/`);
      const foreign = await call(docs + '/headers');
      assert(foreign.error && /TypeError/.test(foreign.error), `another user's origin: ${JSON.stringify(foreign)}`);
      return `same owner: 200 as admin; foreign origin: ${foreign.error}`;
    } finally {
      await context.close();
    }
  });

  await test('cookie tossing: an app cannot plant berth cookies that reach control or another app', async () => {
    for (const user of ['vic', 'mal']) {
      const made = await api('POST', '/users', {
        username: user, email: `${user}@example.com`, password: `${user}-password`, role: 'member',
      });
      assert(made.status === 201, `create ${user}: ${made.status} ${JSON.stringify(made.body)}`);
    }
    // Mal's own, valid control-host session: what her app tosses at visitors.
    const malSession = await new Promise((resolve, reject) => {
      const body = 'username=mal&password=mal-password';
      const req = https.request(
        { host: '127.0.0.1', port, servername: 'berth.localhost', path: '/signin', method: 'POST', ca,
          headers: { host: `berth.localhost:${port}`, origin: `https://berth.localhost:${port}`,
            'content-type': 'application/x-www-form-urlencoded', 'content-length': body.length } },
        (res) => {
          res.resume();
          const c = (res.headers['set-cookie'] ?? []).find((v) => v.startsWith('__Host-berth_session='));
          c ? resolve(c.split(';')[0].split('=').slice(1).join('=')) : reject(new Error(`no session: ${res.statusCode}`));
        },
      );
      req.on('error', reject);
      req.end(body);
    });
    const shared = await api('PUT', shareUrl, { level: 'public' });
    assert(shared.status === 200, `share: ${shared.status}`);
    const { context, page } = await newPage(h2, null, false);
    const control = `https://berth.localhost:${port}`;
    try {
      // Vic signs in to the dashboard, then opens the (public) app, which
      // answers with berth's cookie names for the whole site.
      await page.goto(`${control}/signin`);
      await signIn(page, 'vic', 'vic-password', `${control}/`);
      const toss = [
        `berth_session=${malSession}; Domain=berth.localhost; Path=/api; Secure`,
        `__Host-berth_session=${malSession}; Path=/; Secure`,
        'berth_app=forged; Domain=berth.localhost; Path=/; Secure',
        `__Host-berth_app=${malSession}; Path=/; Secure`,
        'theme=dark; Path=/; Secure',
      ];
      const res = await page.goto(`${appUrl}/toss?` + toss.map((c) => 'c=' + encodeURIComponent(c)).join('&'));
      assert(res.status() === 200, `toss page: ${res.status()}`);
      // Scripts on the page try too; the edge cannot see these.
      await page.evaluate((v) => {
        document.cookie = `berth_session=${v}; domain=berth.localhost; path=/api/v1; secure`;
        document.cookie = `__Host-berth_session=${v}; domain=berth.localhost; path=/; secure`;
        document.cookie = `__Host-berth_app=${v}; domain=berth.localhost; path=/; secure`;
      }, malSession);
      const all = await context.cookies();
      const show = JSON.stringify(all.map((c) => `${c.name}@${c.domain}${c.path}`));
      assert(all.some((c) => c.name === 'theme' && c.domain === appHost), `the app's own cookie is kept: ${show}`);
      // The edge let none of the app's berth cookies through...
      assert(!all.some((c) => c.name === 'berth_session' && c.path === '/api'), `tossed berth_session stored: ${show}`);
      assert(!all.some((c) => c.name === 'berth_app'), `tossed berth_app stored: ${show}`);
      assert(!all.some((c) => c.name.startsWith('__Host-berth_') && c.domain === appHost), `__Host- berth cookie on the app host: ${show}`);
      // ...and Chromium refused the script's __Host- ones for the parent domain,
      // while it did take the unprefixed one (which berth never reads).
      assert(!all.some((c) => c.name.startsWith('__Host-') && c.domain.endsWith('.berth.localhost')), `__Host- cookie with a Domain: ${show}`);
      assert(all.some((c) => c.name === 'berth_session' && c.path === '/api/v1'), `Chromium did not take the script's cookie: ${show}`);
      // What Chromium sends to control: exactly one __Host-berth_session, Vic's.
      const toControl = (await context.cookies(`${control}/api/v1/me`)).filter((c) => c.name === '__Host-berth_session');
      assert(toControl.length === 1 && toControl[0].value !== malSession && toControl[0].domain === 'berth.localhost',
        `session cookies for control: ${JSON.stringify(toControl)}`);
      // ...and nothing of berth's to another user's app host.
      const other = (await context.cookies(`https://5173--main--dev--carol.berth.localhost:${port}/`))
        .filter((c) => c.name.startsWith('__Host-berth_'));
      assert(other.length === 0, `berth cookies for another app: ${JSON.stringify(other)}`);
      // The dashboard acts as Vic: /me, and a write, despite Mal's tossed session.
      await page.goto(`${control}/`);
      const seen = await page.evaluate(async () => {
        const me = await (await fetch('/api/v1/me')).json();
        const made = await fetch('/api/v1/workspaces', {
          method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name: 'tossed' }),
        });
        return { me: me.username, status: made.status, owner: (await made.json()).owner };
      });
      assert(seen.me === 'vic', `/api/v1/me answered ${seen.me}`);
      assert(seen.status === 201 && seen.owner === 'vic', `workspace made as ${JSON.stringify(seen)}`);
      const gone = await api('DELETE', '/workspaces/vic/tossed');
      assert(gone.status === 204, `clean up: ${gone.status}`);
      return `control saw vic; cookies in the jar: ${show}`;
    } finally {
      await context.close();
      await api('DELETE', shareUrl);
    }
  });

  await test('cross-origin: a page on carol\'s public app gets no form POST, no-cors POST or WebSocket through to admin\'s private app as admin', async () => {
    // Carol, her workspace and agent (a real `berth agent` process), and her
    // public app: the same little app, which serves the attack page too.
    const made = await api('POST', '/users', {
      username: 'carol', email: 'carol@example.com', password: 'carol-password', role: 'member',
    });
    assert(made.status === 201, `create carol: ${made.status} ${JSON.stringify(made.body)}`);
    const login = await nodeApi(port, ca, token, 'POST', '/login', { username: 'carol', password: 'carol-password' });
    const carol = (method, apiPath, body) => nodeApi(port, ca, login.body.token, method, apiPath, body);
    assert((await carol('POST', '/workspaces', { name: 'lab' })).status === 201, 'carol\'s workspace');
    const agent = await carol('POST', '/workspaces/carol/lab/agents', { name: 'main' });
    assert(agent.status === 201, `carol's agent: ${agent.status} ${JSON.stringify(agent.body)}`);
    carolAgent = spawn(
      BERTH,
      ['agent', '--url', `https://berth.localhost:${port}`, '--token', agent.body.agent_token, '--ca-file', caPem],
      { env: { ...process.env, NO_COLOR: '1' }, stdio: ['ignore', 'ignore', DEBUG ? 'inherit' : 'ignore'] },
    );
    const shared = await carol('PUT', `/workspaces/carol/lab/agents/main/ports/${app.port}/share`, { level: 'public' });
    assert(shared.status === 200, `carol shares: ${shared.status} ${JSON.stringify(shared.body)}`);
    const carolHost = `${app.port}--main--lab--carol.berth.localhost`;
    const carolUrl = `https://${carolHost}:${port}`;
    const upBy = Date.now() + 15_000;
    while ((await nodeGet(carolHost, port, ca, {}).catch(() => 0)) !== 200) {
      assert(Date.now() < upBy, 'carol\'s agent never connected');
      await sleep(100);
    }
    const docs = `https://docs--main--dev--admin.berth.localhost:${port}`;
    const notes = [];
    for (const [label, browser] of [['h2', h2], ['http/1.1', h1]]) {
      const { context, page } = await newPage(browser, null, false);
      try {
        // Admin signs in on the private app (its cookie is host-only).
        await page.goto(appUrl + '/');
        await signIn(page, 'admin', adminPassword, appUrl + '/');
        // Control: from admin's own other app (same owner), everything passes.
        app.seen.length = 0;
        await page.goto(`${docs}/attack?target=${encodeURIComponent(appUrl)}`);
        const own = await page.evaluate(() => window.attack());
        const fromDocs = app.seen.filter((r) => r.origin === docs);
        for (const via of ['form', 'nocors', 'ws']) {
          const r = fromDocs.find((r) => r.via === via);
          assert(r && r.user === 'admin' && r.host === appHost, `[${label}] same owner ${via}: ${JSON.stringify(app.seen)}`);
        }
        assert(own.ws === 'read: secret?', `[${label}] same owner WebSocket: ${own.ws}`);
        // The attack: carol's page, in the same browser.
        app.seen.length = 0;
        const res = await page.goto(`${carolUrl}/attack?target=${encodeURIComponent(appUrl)}`);
        assert(res.status() === 200, `carol's page: ${res.status()}`);
        const got = await page.evaluate(() => window.attack());
        await sleep(300);
        const reached = app.seen.filter((r) => r.host === appHost);
        assert(reached.length === 0, `[${label}] reached admin's app from carol's page: ${JSON.stringify(reached)}`);
        assert(got.ws === 'refused', `[${label}] carol's page and admin's WebSocket: ${got.ws}`);
        // What the browser saw of it: berth's 403 page in the frame is not
        // readable from carol's page; berth's log names the refusals.
        notes.push(`${label}: form ${got.form}, no-cors ${got.nocors}, WebSocket ${got.ws}`);
      } finally {
        await context.close();
      }
    }
    const refusals = berthLog.split('\n').filter((l) => l.includes('cross-origin request refused'));
    assert(refusals.length >= 6, `berth logged ${refusals.length} refusals:\n${refusals.join('\n')}`);
    // Carol leaves: her agent and workspace would show on admin's dashboard.
    carolAgent.kill('SIGTERM');
    const gone = await carol('DELETE', '/workspaces/carol/lab');
    assert(gone.status === 204, `delete carol's workspace: ${gone.status}`);
    return notes.join('; ');
  });

  await test('wake on visit: an offline workspace shows "Starting your workspace", the webhook starts its agent, the page lands on the app', async () => {
    assert((await api('POST', '/workspaces', { name: 'sleepy' })).status === 201, 'workspace sleepy');
    const agent = await api('POST', '/workspaces/admin/sleepy/agents', { name: 'main' });
    assert(agent.status === 201, `agent: ${agent.status}`);
    // The receiver starts the workspace's agent (a real process) a moment
    // after it is called, so the page shows the wait first.
    wakeHook.start = () => {
      wakeHook.start = null;
      setTimeout(() => {
        wakeAgent = spawn(
          BERTH,
          ['agent', '--url', `https://berth.localhost:${port}`, '--token', agent.body.agent_token, '--ca-file', caPem],
          { env: { ...process.env, NO_COLOR: '1' }, stdio: ['ignore', 'ignore', DEBUG ? 'inherit' : 'ignore'] },
        );
      }, 1500);
    };
    const sleepyUrl = `https://${app.port}--main--sleepy--admin.berth.localhost:${port}/`;
    const { context, page } = await newPage(h2, auth, false);
    try {
      const res = await page.goto(sleepyUrl);
      assert(res.status() === 503, `first answer: ${res.status()}`);
      assert((await page.title()) === 'Starting your workspace', `title: ${await page.title()}`);
      await shot(page, 'wake');
      // The page follows the start and reloads into the app by itself.
      await page.waitForFunction((t) => document.title === t, PAGE_TITLE, { timeout: 20_000 });
      const marker = await page.textContent('#marker');
      assert(marker === PAGE_MARKER, `landed on: ${marker}`);
      assert(wakeHook.calls.length === 1, `webhook calls: ${JSON.stringify(wakeHook.calls)}`);
      const call = wakeHook.calls[0];
      assert(call.signed, 'the call is signed with the secret');
      assert(call.event === 'workspace.wake' && call.body.workspace === 'sleepy' && call.body.agent === 'main'
        && call.body.requested_by.user === 'admin', `call: ${JSON.stringify(call)}`);
      return `woken in one call; landed on ${page.url()}`;
    } finally {
      await context.close();
      if (wakeAgent) wakeAgent.kill('SIGTERM');
      await api('DELETE', '/workspaces/admin/sleepy');
    }
  });

  await test('the audit log on the dashboard lists the link and the shares', async () => {
    const { context, page } = await newPage(h2, null, false);
    try {
      await page.goto(`https://berth.localhost:${port}/`);
      await signIn(page, 'admin', adminPassword, `https://berth.localhost:${port}/`);
      const audit = page.locator('#audit table');
      await audit.waitFor({ timeout: 10_000 });
      const text = await audit.textContent();
      for (const want of ['link.revoked', 'link.redeemed', 'link.created', 'port.shared', 'session.started']) {
        assert(text.includes(want), `audit lacks ${want}: ${text.slice(0, 300)}`);
      }
      await shot(page, 'dashboard-audit');
    } finally {
      await context.close();
    }
  });

  // The request inspector's page (tests/browser/inspector.mjs).
  await inspectorTests({ test, assert, h2, newPage, signIn, port, adminPassword, api, app, appHost, token, ca, caPem });

  await test('regions: the dashboard times each region from the browser and links ports on the fastest', async () => {
    // A second region with its own `berth edge` process, certificate from
    // control's CA (so the browser already trusts it).
    const edgePort = await freePort();
    const created = await nodeApi(port, ca, token, 'POST', '/regions', {
      name: 'near',
      url: `https://near.berth.localhost:${edgePort}`,
      wildcard: '*.near.berth.localhost',
    });
    assert(created.status === 201, `create region: ${created.status} ${JSON.stringify(created.body)}`);
    edge = spawn(
      BERTH,
      ['edge', '--url', `https://berth.localhost:${port}`, '--region-token', created.body.region_token,
        '--listen', `127.0.0.1:${edgePort}`, '--base-domain', 'near.berth.localhost',
        '--wildcard', '*.near.berth.localhost', '--ca-file', caPem,
        '--data-dir', tempDir('berth-browser-edge-'), '--admin-listen', 'off'],
      { env: { ...process.env, NO_COLOR: '1' }, stdio: ['ignore', 'ignore', DEBUG ? 'inherit' : 'ignore'] },
    );
    const healthyBy = Date.now() + 20_000;
    for (;;) {
      const r = await nodeApi(port, ca, token, 'GET', '/regions');
      if (r.body?.[0]?.healthy === true) break;
      assert(Date.now() < healthyBy, `the region never became healthy: ${JSON.stringify(r.body)}`);
      await sleep(200);
    }
    const { context, page } = await newPage(h2, null, false);
    try {
      await page.goto(`https://berth.localhost:${port}/`);
      await signIn(page, 'admin', adminPassword, `https://berth.localhost:${port}/`);
      const table = page.locator('#regions table');
      await table.waitFor({ timeout: 15_000 });
      const rows = await page.$$eval('#regions tr[data-region]', (trs) =>
        trs.map((tr) => ({ name: tr.dataset.region, rtt: tr.querySelector('.rtt').textContent, fastest: tr.textContent.includes('(fastest)') })));
      const names = rows.map((r) => r.name).sort().join(',');
      assert(names === 'control,near', `regions shown: ${names}`);
      for (const r of rows) assert(/^\d+ ms$/.test(r.rtt), `no round trip measured for ${r.name}: ${r.rtt}`);
      const fastest = rows.filter((r) => r.fastest);
      assert(fastest.length === 1, `one region is marked fastest: ${JSON.stringify(rows)}`);
      // The port's link goes through the fastest region, and it works.
      const link = page.locator(`tr[data-port="${app.port}"] a.app`);
      await link.waitFor({ timeout: 10_000 });
      const [via, href] = [await link.getAttribute('data-region'), await link.getAttribute('href')];
      assert(via === fastest[0].name, `the link is via ${via}, the fastest is ${fastest[0].name}`);
      const wantHost = via === 'near' ? `${app.port}--main--dev--admin.near.berth.localhost:${edgePort}` : `${appHost}:${port}`;
      assert(href === `https://${wantHost}`, `link ${href}, expected https://${wantHost}`);
      await shot(page, 'dashboard-regions');
      const visit = await newPage(h2, auth, false);
      try {
        const res = await visit.page.goto(href + '/');
        assert(res.status() === 200, `opening the fastest link: ${res.status()}`);
        assert((await visit.page.textContent('body')).includes(PAGE_MARKER), 'app content through the fastest region');
      } finally {
        await visit.context.close();
      }
      return rows.map((r) => `${r.name} ${r.rtt}${r.fastest ? ' (fastest)' : ''}`).join(', ') + `; link via ${via}`;
    } finally {
      await context.close();
    }
  });

  await test('a well-formed host naming nothing (with a token): 404 HTML page', async () => {
    const { context, page } = await newPage(h2, auth, false);
    try {
      const res = await page.goto(`https://${app.port}--main--nope--admin.berth.localhost:${port}/`);
      assert(res && res.status() === 404, `status ${res?.status()}`);
      const ct = (await res.allHeaders())['content-type'] ?? '';
      assert(ct.startsWith('text/html'), `content-type ${ct}`);
      assert(/not found/i.test(await page.textContent('body')), 'page does not say not found');
    } finally {
      await context.close();
    }
  });

  await test('a host under the wildcard that is not an app label: 404 HTML page', async () => {
    const { context, page } = await newPage(h2, auth, false);
    try {
      const res = await page.goto(`https://not-an-app.berth.localhost:${port}/`);
      assert(res && res.status() === 404, `status ${res?.status()}`);
      const text = await page.textContent('body');
      return text.replace(/\s+/g, ' ').trim().slice(0, 120);
    } finally {
      await context.close();
    }
  });

  await test('control: without the CA in NSS, Chromium refuses the certificate', async () => {
    const untrusted = await launch(makeNssHome(null));
    const { page } = await newPage(untrusted, auth, false);
    let err = null;
    try {
      await page.goto(appUrl + '/');
    } catch (e) {
      err = e;
    }
    await untrusted.close();
    assert(err, 'the page loaded although the CA is not trusted: trust is not coming from the NSS db');
    assert(/ERR_CERT_AUTHORITY_INVALID/.test(err.message), `unexpected error: ${err.message.split('\n')[0]}`);
    return 'net::ERR_CERT_AUTHORITY_INVALID';
  });

  await journey();

  await test('no console errors or page errors on the app\'s pages', async () => {
    assert(consoleProblems.length === 0, consoleProblems.join('\n'));
  });

  if (pageHeaders) {
    const shown = Object.entries(pageHeaders)
      .map(([k, v]) => `${k}: ${v}`)
      .join('; ');
    console.log(`# app page response headers as Chromium saw them: ${shown}`);
  }
  console.log(`# total ${Date.now() - tStart} ms`);
}

// --------------------------------------------------------------- driver --
const killer = setTimeout(async () => {
  console.log(`not ok - the whole run exceeded ${RUN_TIMEOUT_MS / 1000} s`);
  results.push({ name: 'run timeout', ok: false });
  summary();
  try {
    berth?.kill('SIGKILL');
  } catch {}
  await Promise.race([cleanup(), sleep(5000)]);
  process.exit(1);
}, RUN_TIMEOUT_MS);
killer.unref();

for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, async () => {
    await Promise.race([cleanup(), sleep(5000)]);
    process.exit(130);
  });
}

let fatal = null;
try {
  await main();
} catch (e) {
  fatal = e;
  results.push({ name: 'setup', ok: false, error: e });
  console.log(`not ok ${results.length} - setup`);
  console.log(String(e?.stack || e).split('\n').map((l) => '#   ' + l).join('\n'));
} finally {
  await cleanup();
}
clearTimeout(killer);
const failed = summary();
process.exit(failed || fatal ? 1 : 0);
