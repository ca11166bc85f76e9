// The request inspector's page in Chromium (issue 16), called from
// browser.test.mjs with its running berth, app and browser: requests to the
// app appear live, the detail shows their headers without berth's
// credentials, replay and edited replay reach the app again, the HAR export
// parses with the listed entries, the curl text runs, a WebSocket is one
// entry with its duration, and another user gets no page and no data.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import fs from 'node:fs';
import https from 'node:https';

/** One HTTPS request from Node to the app through the edge, as the owner (API token). */
function appRequest(ctx, method, pathAndQuery, headers, body) {
  const { port, ca, appHost, token } = ctx;
  return new Promise((resolve, reject) => {
    const data = body ? Buffer.from(body) : null;
    const req = https.request(
      {
        host: '127.0.0.1', port, servername: appHost, path: pathAndQuery, method, ca,
        headers: {
          host: `${appHost}:${port}`, authorization: `Bearer ${token}`, ...headers,
          ...(data ? { 'content-length': data.length } : {}),
        },
      },
      (res) => {
        let text = '';
        res.on('data', (c) => (text += c));
        res.on('end', () => resolve({ status: res.statusCode, body: text }));
      },
    );
    req.on('error', reject);
    req.setTimeout(5000, () => req.destroy(new Error('timeout')));
    req.end(data);
  });
}

/** Waits until `cond()` is truthy (polled every 50 ms) or fails naming `what`. */
async function until(cond, what, ms = 10_000) {
  const by = Date.now() + ms;
  for (;;) {
    const v = await cond();
    if (v) return v;
    if (Date.now() > by) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export async function inspectorTests(ctx) {
  const { test, assert, h2, newPage, signIn, port, adminPassword, api, app, appHost, token, caPem } = ctx;
  const control = `https://berth.localhost:${port}`;
  const inspectPath = `/dashboard/inspect/admin/dev/main/${app.port}`;
  // Watched: a console error (a refused script or style, say) fails the run's last check.
  const { context, page } = await newPage(h2, null, true, '[inspector]');
  const rowOf = (p) => page.locator('#requests tbody tr', { has: page.locator('td.path', { hasText: p }) });
  const probe = `probe-${Date.now()}`;
  try {
    await test('inspector: opened from the dashboard, the app\'s requests appear live', async () => {
      await page.goto(`${control}/`);
      await signIn(page, 'admin', adminPassword, `${control}/`);
      const link = page.locator(`tr[data-port="${app.port}"] a.inspect`);
      await link.waitFor({ timeout: 10_000 });
      await Promise.all([page.waitForURL(`${control}${inspectPath}`), link.click()]);
      await until(async () => (await page.textContent('#live')) === 'live', 'the live stream opens');
      const sent = await appRequest(ctx, 'POST', `/inspect-me?n=1&${probe}`,
        { 'content-type': 'text/plain', 'x-probe': probe, cookie: 'app_pref=dark' }, 'hello inspector');
      assert(sent.status === 200, `the request to the app: ${sent.status} ${sent.body}`);
      const t0 = Date.now();
      await rowOf(`/inspect-me?n=1&${probe}`).waitFor({ timeout: 10_000 });
      const ws = await newPage(h2, { Authorization: `Bearer ${token}` }, false);
      try {
        await ws.page.goto(`https://${appHost}:${port}/`);
        await ws.page.evaluate(() => new Promise((resolve, reject) => {
          const s = new WebSocket(location.origin.replace(/^https:/, 'wss:') + '/ws?inspector');
          s.onopen = () => { s.send('hi'); setTimeout(() => s.close(1000), 400); };
          s.onclose = resolve;
          s.onerror = reject;
        }));
      } finally {
        await ws.context.close();
      }
      const wsRow = rowOf('/ws?inspector');
      await wsRow.waitFor({ timeout: 10_000 });
      const kind = await wsRow.locator('td.kind').textContent();
      const open = await wsRow.locator('td.duration').textContent();
      assert(kind === 'websocket', `the WebSocket's kind: ${kind}`);
      const openMs = open.endsWith(' s') ? parseFloat(open) * 1000 : parseFloat(open);
      assert(openMs >= 400, `the WebSocket's entry lasts its whole life (>= 400 ms): ${open}`);
      return `listed ${Date.now() - t0} ms after the app answered; WebSocket one entry, open ${open}`;
    });

    await test('inspector: the detail shows the headers and bodies, without berth\'s credentials', async () => {
      await rowOf(`/inspect-me?n=1&${probe}`).click();
      await page.locator('#detail').waitFor({ state: 'visible' });
      const req = await page.textContent('#req-headers');
      const res = await page.textContent('#res-headers');
      assert(req.includes('x-probe') && req.includes(probe), `request headers lack x-probe: ${req}`);
      assert(req.includes('app_pref=dark'), `the app's own cookie is shown: ${req}`);
      assert(res.includes('x-app-says') && res.includes('inspected'), `response headers: ${res}`);
      assert((await page.textContent('#req-body')).includes('hello inspector'), 'request body');
      assert((await page.textContent('#res-body')).includes('"got":"hello inspector"'), 'response body');
      const all = await page.textContent('#detail');
      assert(!/authorization/i.test(req), `an Authorization header is shown: ${req}`);
      assert(!all.includes(token) && !all.includes('berth_api_'), 'the API token is on the page');
    });

    await test('inspector: replay sends the request again, the app sees it and a new entry appears', async () => {
      const before = app.inspected.length;
      const rows = await page.locator('#requests tbody tr').count();
      await page.click('#replay');
      await until(async () => /Replayed .* as .*: 200\./.test(await page.textContent('#msg')), 'the replay answers');
      await until(() => app.inspected.length === before + 1, 'the app gets the replay');
      const got = app.inspected.at(-1);
      assert(got.method === 'POST' && got.body === 'hello inspector' && got.headers['x-probe'] === probe,
        `the app got: ${JSON.stringify(got)}`);
      assert(got.headers['x-berth-user'] === 'admin', `replayed as: ${got.headers['x-berth-user']}`);
      assert((await page.locator('#requests tbody tr').count()) === rows + 1, 'one new entry');
      assert((await page.locator('#requests tbody tr td.kind', { hasText: 'replay' }).count()) >= 1, 'the entry says replay');
    });

    await test('inspector: edit and replay changes what the app receives', async () => {
      await rowOf(`/inspect-me?n=1&${probe}`).first().click();
      await page.click('#edit');
      await page.fill('#editor input[name=method]', 'PUT');
      await page.fill('#editor input[name=path]', `/inspect-me?n=2&${probe}`);
      const headers = await page.inputValue('#editor textarea[name=headers]');
      await page.fill('#editor textarea[name=headers]', headers.replace(`x-probe: ${probe}`, `x-probe: edited-${probe}`));
      await page.fill('#editor textarea[name=body]', 'an edited body');
      const before = app.inspected.length;
      await page.click('#send');
      await until(() => app.inspected.length === before + 1, 'the app gets the edited replay');
      const got = app.inspected.at(-1);
      assert(got.method === 'PUT' && got.path === `/inspect-me?n=2&${probe}`, `method/path: ${got.method} ${got.path}`);
      assert(got.headers['x-probe'] === `edited-${probe}`, `header: ${got.headers['x-probe']}`);
      assert(got.body === 'an edited body', `body: ${got.body}`);
      await rowOf(`/inspect-me?n=2&${probe}`).waitFor({ timeout: 10_000 });
    });

    await test('inspector: the HAR export is HAR 1.2 with the listed entries', async () => {
      const [download] = await Promise.all([page.waitForEvent('download', { timeout: 10_000 }), page.click('#har')]);
      const file = await download.path();
      const har = JSON.parse(fs.readFileSync(file, 'utf8'));
      const listed = await page.locator('#requests tbody tr').count();
      assert(har.log && har.log.version === '1.2' && har.log.creator?.name === 'berth', 'HAR log header');
      assert(har.log.entries.length === listed, `${har.log.entries.length} entries, ${listed} listed`);
      for (const e of har.log.entries) {
        assert(typeof e.startedDateTime === 'string' && !isNaN(Date.parse(e.startedDateTime)), 'startedDateTime');
        assert(e.request?.method && e.request.url && Array.isArray(e.request.headers) && e.response?.status >= 100
          && e.response.content && e.timings?.wait >= 0 && e.timings.receive >= 0, `entry: ${JSON.stringify(e).slice(0, 200)}`);
      }
      const edited = har.log.entries.find((e) => e.request.url.includes(`/inspect-me?n=2&${probe}`));
      assert(edited && edited.request.method === 'PUT' && edited.request.postData?.text === 'an edited body', 'the edited replay');
      assert(!JSON.stringify(har).includes(token), 'the API token is in the HAR');
      return `${listed} entries`;
    });

    await test('inspector: "copy as curl" gives a command that runs against the edge', async () => {
      await rowOf(`/inspect-me?n=1&${probe}`).last().click();
      await page.click('#curl');
      const text = (await page.textContent('#curl-text')).trim();
      assert(text.startsWith('curl '), `curl text: ${text}`);
      // The command carries no credentials: the port is public while it runs.
      const shared = await api('PUT', `/workspaces/admin/dev/agents/main/ports/${app.port}/share`, { level: 'public' });
      assert(shared.status === 200, `share: ${shared.status}`);
      const before = app.inspected.length;
      try {
        // Not execFileSync: the app runs in this process and must answer meanwhile.
        const { stdout: out } = await promisify(execFile)('bash',
          ['-c', `${text} -sS --fail --cacert ${caPem} --resolve ${appHost}:${port}:127.0.0.1`], { timeout: 10_000 });
        assert(out.includes('"got":"hello inspector"'), `curl printed: ${out}`);
      } finally {
        await api('DELETE', `/workspaces/admin/dev/agents/main/ports/${app.port}/share`);
      }
      const got = app.inspected.at(-1);
      assert(app.inspected.length === before + 1 && got.method === 'POST' && got.body === 'hello inspector'
        && got.headers['x-probe'] === probe, `the app got: ${JSON.stringify(got)}`);
      return text.length > 120 ? text.slice(0, 120) + '…' : text;
    });

    await test('inspector: another user gets no inspector page and no data', async () => {
      const made = await api('POST', '/users', {
        username: 'ivy', email: 'ivy@example.com', password: 'ivy-password', role: 'member',
      });
      assert(made.status === 201, `create ivy: ${made.status} ${JSON.stringify(made.body)}`);
      const other = await newPage(h2, null, false);
      try {
        await other.page.goto(`${control}/`);
        await signIn(other.page, 'ivy', 'ivy-password', `${control}/`);
        const res = await other.page.goto(`${control}${inspectPath}`);
        assert(res.status() === 404, `ivy's page: ${res.status()}`);
        const body = await other.page.textContent('body');
        assert(!body.includes(probe) && !/Export HAR/.test(body), 'the page shows inspector content');
        const data = await other.page.evaluate(async (p) => {
          const list = await fetch(`/api/v1/workspaces/admin/dev/agents/main/ports/${p}/requests`);
          return { status: list.status, text: await list.text() };
        }, app.port);
        assert(data.status === 404 && !data.text.includes(probe), `ivy's API answer: ${data.status} ${data.text.slice(0, 100)}`);
      } finally {
        await other.context.close();
      }
    });
  } finally {
    await context.close();
  }
}
