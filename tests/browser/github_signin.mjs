// Chromium (playwright-core, Debian's chromium) signs in with GitHub through
// berth: opens an app, is sent to berth's sign-in page, presses "Sign in with
// GitHub", goes through the GitHub stand-in's OAuth pages and lands back on
// the app. Driven by the Rust e2e test
// `github::github_sign_in_in_chromium`, which runs berth and the stand-in
// (tests/e2e/support/github.rs) and checks what the app saw.
//
// Environment: CHROMIUM, CA_PEM (berth's CA, trusted through an NSS database
// in the browser's $HOME), APP_URL, GITHUB_URL, GITHUB_LOGIN.
// Prints, last, one line of JSON: {"url", "status", "body"} of the landing page.
import { chromium } from 'playwright-core';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`${k} is not set`);
  return v;
};

const home = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-gh-home-'));
const db = path.join(home, '.pki', 'nssdb');
fs.mkdirSync(db, { recursive: true });
execFileSync('certutil', ['-d', `sql:${db}`, '-N', '--empty-password'], { stdio: 'pipe' });
execFileSync('certutil', ['-d', `sql:${db}`, '-A', '-t', 'C,,', '-n', 'berth-local-ca', '-i', env('CA_PEM')], {
  stdio: 'pipe',
});

const browser = await chromium.launch({
  executablePath: env('CHROMIUM'),
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking'],
  env: { ...process.env, HOME: home },
  timeout: 30_000,
});
try {
  const context = await browser.newContext();
  const page = await context.newPage();
  // Signed in to "GitHub" in this browser: a same-origin form post on the
  // stand-in's own pages sets its session cookie, as github.com's sign-in would.
  await page.goto(`${env('GITHUB_URL')}/login/oauth/authorize`, { timeout: 15_000 });
  const session = await page.evaluate(
    (login) => fetch('/session', { method: 'POST', body: new URLSearchParams({ login }) }).then((r) => r.status),
    env('GITHUB_LOGIN'),
  );
  if (session !== 204) throw new Error(`GitHub session: ${session}`);
  await page.goto(env('APP_URL'), { timeout: 15_000 });
  if (!page.url().includes('/signin?')) throw new Error(`not sent to sign in: ${page.url()}`);
  const [response] = await Promise.all([
    page.waitForNavigation({ url: (u) => u.href.startsWith(env('APP_URL')), timeout: 15_000 }),
    page.click('button:has-text("Sign in with GitHub")'),
  ]);
  const body = await page.textContent('body');
  console.log(JSON.stringify({ url: page.url(), status: response?.status() ?? 0, body }));
} finally {
  await browser.close();
  fs.rmSync(home, { recursive: true, force: true });
}
