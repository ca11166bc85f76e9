// The dashboard journey in Chromium, real clicks only: from an empty data dir
// to an app on a second agent shared with a second user, no API call from the
// test. A fresh `berth dev` (its own data dir and CA, links capped at 2 h by
// policy); the admin adds bob and carol on the People form; bob lands on the
// empty state, creates a workspace from it, and the test runs the agent
// command the page shows; bob's app appears by itself (live refresh), bob
// names it, shares it with carol (who gets a 404 before and the app after),
// is asked before it goes public, sees a refusal leave the level in force,
// makes a one-use link (used up after one visit) and takes the name off.
// Screenshots of each state go to $BERTH_SCREENSHOTS (docs/screenshots).
//
// Called from browser.test.mjs with its helpers: runDashboardJourney(h).
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { startApp, PAGE_MARKER } from './app.mjs';

const VIEW = { width: 1280, height: 800 };

export async function runDashboardJourney(h) {
  const { BERTH, test, assert, sleep, tempDir, freePort, launch, makeNssHome, signIn, DEBUG } = h;
  const procs = [];
  const app = await startApp();
  const dataDir = tempDir('berth-journey-data-');
  const port = await freePort();
  const base = `https://berth.localhost:${port}`;
  const shots = process.env.BERTH_SCREENSHOTS || '';
  const shot = async (page, name) => {
    if (!shots) return;
    fs.mkdirSync(shots, { recursive: true });
    await page.screenshot({ path: path.join(shots, `${name}.png`) });
  };
  const started = (args, env = {}) => {
    const child = spawn(h.BERTH, args, {
      cwd: dataDir,
      env: { ...process.env, NO_COLOR: '1', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (b) => { out += b; if (DEBUG) process.stderr.write(`[journey] ${b}`); });
    child.stderr.on('data', (b) => { out += b; if (DEBUG) process.stderr.write(`[journey] ${b}`); });
    procs.push(child);
    return { child, out: () => out };
  };
  let browser = null;
  try {
    const berth = started(['dev', '--data-dir', dataDir, '--listen', `127.0.0.1:${port}`, '--admin-listen', 'off'], {
      BERTH_LIMITS_LOGIN_BURST: '1000', BERTH_LIMITS_LOGIN_PER_MINUTE: '1000', BERTH_SHARING_MAX_LINK_TTL_SECS: '7200',
    });
    for (let by = Date.now() + 30_000; !berth.out().includes('\n  curl '); await sleep(100)) {
      assert(Date.now() < by && berth.child.exitCode === null, `the journey's berth dev never printed its banner:\n${berth.out()}`);
    }
    const adminPassword = (berth.out().match(/admin password\s+(\S+)/) ?? [])[1];
    assert(adminPassword, 'no admin password in the banner');
    browser = await launch(makeNssHome(path.join(dataDir, 'ca.pem')));
    const ctx = async () => {
      const context = await browser.newContext({ viewport: VIEW });
      const page = await context.newPage();
      return { context, page };
    };
    const admin = await ctx();
    const bob = await ctx();
    const carol = await ctx();
    const appUrl = `https://web--main--laptop--bob.berth.localhost:${port}/`;

    await test('dashboard journey: the admin adds two people on the People form', async () => {
      const { page } = admin;
      await page.goto(base + '/');
      await signIn(page, 'admin', adminPassword, base + '/');
      await page.locator('section[data-agent="admin/dev/main"] .state.on').waitFor({ timeout: 15_000 });
      for (const [name, pw] of [['bob', 'bob-password-1'], ['carol', 'carol-password-1']]) {
        await page.fill('#user-name', name);
        await page.fill('#user-email', `${name}@example.com`);
        await page.fill('#user-password', pw);
        await page.click('#user-go');
        await page.locator(`#users tr[data-user="${name}"]`).waitFor({ timeout: 10_000 });
      }
      await shot(page, 'dashboard-admin');
    });

    let command = '';
    let bobAgent = null;
    await test('dashboard journey: bob lands on the empty state and creates a workspace from it', async () => {
      const { page } = bob;
      await page.goto(base + '/');
      await signIn(page, 'bob', 'bob-password-1', base + '/');
      await page.locator('#empty-create').waitFor({ timeout: 10_000 });
      const text = await page.textContent('#empty');
      assert(/No workspaces yet/.test(text) && /Create a workspace/.test(text), `empty state: ${text}`);
      await shot(page, 'dashboard-empty');
      await page.click('#empty-create');
      assert(await page.evaluate(() => document.activeElement.id === 'add-ws'), 'the button does not lead to the form');
      await page.fill('#add-ws', 'laptop');
      await page.fill('#add-agent', 'main');
      await page.click('#add-go');
      await page.locator('#agent-command').waitFor({ state: 'visible', timeout: 10_000 });
      command = (await page.textContent('#agent-command')).trim();
      assert(command.startsWith(`berth agent --url ${base} --token berth_agent_`), `command: ${command}`);
      assert(command.includes(`--ca-file ${path.join(dataDir, 'ca.pem')}`), `no CA in: ${command}`);
      await page.locator('section[data-agent="bob/laptop/main"] .state.off').waitFor({ timeout: 10_000 });
      await shot(page, 'dashboard-agent-command');
    });

    await test('dashboard journey: the agent started from the shown command appears connected with its port, no reload', async () => {
      const { page } = bob;
      assert(command, 'no command from the previous step');
      const [, ...args] = command.split(/\s+/);
      bobAgent = started(args);
      const t0 = Date.now();
      const sec = page.locator('section[data-agent="bob/laptop/main"]');
      await sec.locator('.state.on').waitFor({ timeout: 20_000 });
      await sec.locator(`tr[data-port="${app.port}"]`).waitFor({ timeout: 10_000 });
      const said = await page.textContent('#msg');
      assert(said.includes('Agent bob/laptop/main is connected'), `the page does not say the agent connected: ${said}`);
      return `connected and listed ${Date.now() - t0} ms after the agent started`;
    });

    const row = () => bob.page.locator(`section[data-agent="bob/laptop/main"] tr[data-port="${app.port}"]`);
    // Opens `url` as `who` (through the "Continue as ..." question a signed-in
    // visitor of someone else's app gets): the status, and whether the app answered.
    const visit = async (who, url) => {
      let res = await who.page.goto(url);
      const go = who.page.locator('button', { hasText: 'Continue as' });
      if (who.page.url().startsWith(base + '/signin') && (await go.count())) {
        [res] = await Promise.all([who.page.waitForNavigation({ url: (u) => !u.href.startsWith(base), timeout: 10_000 }), go.click()]);
      }
      const app = (await who.page.textContent('body')).includes(PAGE_MARKER);
      return { status: res.status(), app, url: who.page.url() };
    };

    await test('dashboard journey: bob names the app and shares it with carol only (404 before, the app after)', async () => {
      await row().locator('input.app-name').fill('web');
      await row().locator('button.name').click();
      await row().locator('.chip[data-app="web"]').waitFor({ timeout: 10_000 });
      // Carol, signed in, before the share: the same 404 as for nothing there.
      await carol.page.goto(base + '/');
      await signIn(carol.page, 'carol', 'carol-password-1', base + '/');
      const before = await visit(carol, appUrl);
      assert(before.status === 404 && !before.app, `carol before the share: ${JSON.stringify(before)}`);
      const levels = await row().locator('select.level option:not([disabled])').allTextContents();
      assert(levels.join(',') === 'owner,authenticated,public', `levels offered to bob (no organization): ${levels}`);
      await row().locator('input.names').fill('carol');
      await row().locator('button.apply').click();
      await row().locator('.effect', { hasText: 'Also: carol' }).waitFor({ timeout: 10_000 });
      const after = await visit(carol, appUrl);
      assert(after.status === 200 && after.app, `carol after the share: ${JSON.stringify(after)}`);
      await shot(bob.page, 'dashboard-shared');
      return 'carol: 404, then 200 on web--main--laptop--bob';
    });

    await test('dashboard journey: public asks first; a refusal leaves the level in force on show', async () => {
      const { page } = bob;
      await row().locator('input.names').fill('');
      await row().locator('select.level').selectOption('public');
      await page.locator('#confirm[open]').waitFor({ timeout: 5_000 });
      await shot(page, 'dashboard-confirm-public');
      await page.click('#confirm-no');
      assert((await row().locator('select.level').inputValue()) === 'owner', 'cancel did not keep owner');
      const anon = await ctx();
      const cancelled = await visit(anon, appUrl);
      assert(!cancelled.app && cancelled.url.startsWith(base + '/signin'), `public although cancelled: ${JSON.stringify(cancelled)}`);
      await row().locator('select.level').selectOption('public');
      await page.click('#confirm-yes');
      await row().locator('.effect.public').waitFor({ timeout: 10_000 });
      const confirmed = await visit(anon, appUrl);
      assert(confirmed.status === 200 && confirmed.app, `anonymous after confirming public: ${JSON.stringify(confirmed)}`);
      // A refusal (nobody by that name): the row says so and shows what is in force.
      await row().locator('input.names').fill('nobody-here');
      await row().locator('select.level').selectOption('authenticated');
      await row().locator('.effect.refused').waitFor({ timeout: 10_000 });
      const shown = await row().locator('select.level').inputValue();
      assert(shown === 'public', `after the refusal the select shows ${shown}, in force: public`);
      assert((await visit(anon, appUrl)).app, 'the refused change took effect anyway');
      await anon.context.close();
      await shot(page, 'dashboard-refused');
      await row().locator('input.names').fill('carol');
      await row().locator('select.level').selectOption('owner');
      await row().locator('.effect.owner').waitFor({ timeout: 10_000 });
    });

    await test('dashboard journey: link lifetimes stop at the policy; a one-use link shows used up after its visit', async () => {
      const { page } = bob;
      const ttls = await row().locator('select.ttl option').allTextContents();
      assert(ttls.join(',') === '1 hour,2 hours', `link lifetimes offered under max_link_ttl_secs 7200: ${ttls}`);
      await row().locator('input.max-uses').fill('1');
      await row().locator('button.mklink').click();
      await page.locator('#new-link').waitFor({ timeout: 10_000 });
      const link = (await page.textContent('#new-link')).trim();
      const anon = await ctx();
      const opened = await visit(anon, link);
      assert(opened.status === 200 && opened.app, `the link: ${JSON.stringify(opened)}`);
      await anon.context.close();
      // The table refreshes by itself; the visit used the one use.
      const t0 = Date.now();
      await page.locator('#links tr[data-status="used_up"]', { hasText: 'used up' }).waitFor({ timeout: 15_000 });
      await page.evaluate(() => document.querySelector('#links-section').scrollIntoView({ block: 'center' }));
      await shot(page, 'dashboard-links');
      return `"used up" shown ${Date.now() - t0} ms after the visit`;
    });

    await test('dashboard journey: taking the name off closes its URL; a stopped agent shows offline by itself', async () => {
      await row().locator('.chip[data-app="web"] button.unname').click();
      await row().locator('.chip[data-app="web"]').waitFor({ state: 'detached', timeout: 10_000 });
      const gone = await visit(carol, appUrl);
      assert(gone.status === 404 && !gone.app, `the name still answers: ${JSON.stringify(gone)}`);
      bobAgent.child.kill('SIGTERM');
      const t0 = Date.now();
      await bob.page.locator('section[data-agent="bob/laptop/main"] .state.off').waitFor({ timeout: 15_000 });
      return `offline shown ${Date.now() - t0} ms after the agent stopped`;
    });
  } finally {
    if (browser) await browser.close().catch(() => {});
    for (const p of procs.reverse()) if (p.exitCode === null) p.kill('SIGTERM');
    await app.close().catch(() => {});
  }
}
