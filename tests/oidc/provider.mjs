// A real OpenID Provider for berth's tests: panva's certified oidc-provider,
// served over HTTPS on a loopback port, with three fixed accounts and a
// one-field login form (no consent step). Configured by environment:
//   OIDC_PORT, OIDC_ISSUER (https://idp.localhost:PORT), OIDC_CERT, OIDC_KEY
//   (PEM paths), OIDC_CLIENT_ID, OIDC_CLIENT_SECRET, OIDC_REDIRECT_URI;
//   OIDC_ID_TOKEN_CLAIMS=1 puts the scopes' claims (groups among them) in the
//   ID token too, as Okta, Keycloak or Entra do when configured to (by
//   default oidc-provider gives them only at the userinfo endpoint).
// The `groups` scope gives an account's `groups` claim; tests change an
// account's groups with POST /_test/groups {"sub", "groups"}, as an admin
// would at the provider.
// Prints "ready" on stdout once it listens; stops when stdin closes.
import https from 'node:https';
import fs from 'node:fs';
import Provider from 'oidc-provider';

const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`${k} is not set`);
  return v;
};

// sub -> claims. eve's address is not verified; bob's is another domain.
const accounts = {
  alice: { email: 'alice@example.com', email_verified: true, name: 'Alice Liddell' },
  carol: { email: 'Carol@Example.com', email_verified: true, name: 'Carol' },
  bob: { email: 'bob@other.org', email_verified: true, name: 'Bob' },
  eve: { email: 'eve@example.com', email_verified: false, name: 'Eve' },
};

const provider = new Provider(env('OIDC_ISSUER'), {
  clients: [{
    client_id: env('OIDC_CLIENT_ID'),
    client_secret: env('OIDC_CLIENT_SECRET'),
    redirect_uris: [env('OIDC_REDIRECT_URI')],
    grant_types: ['authorization_code'],
    response_types: ['code'],
  }],
  pkce: { required: () => true },
  claims: {
    openid: ['sub'], email: ['email', 'email_verified'], profile: ['name'], groups: ['groups'],
  },
  conformIdTokenClaims: process.env.OIDC_ID_TOKEN_CLAIMS !== '1',
  cookies: { keys: ['berth-test-cookie-key'] },
  features: { devInteractions: { enabled: false } },
  async findAccount(ctx, sub) {
    const claims = accounts[sub];
    if (!claims) return undefined;
    return { accountId: sub, async claims() { return { sub, ...claims }; } };
  },
  // Skip the consent screen: grant what the client asks for.
  async loadExistingGrant(ctx) {
    const grant = new ctx.oidc.provider.Grant({
      accountId: ctx.oidc.session.accountId,
      clientId: ctx.oidc.client.clientId,
    });
    grant.addOIDCScope(ctx.oidc.params.scope || 'openid email profile');
    await grant.save();
    return grant;
  },
});
provider.proxy = false;

const form = (uid) => `<!doctype html><form method="post" action="/interaction/${uid}/login">
<input name="login"><button>Sign in</button></form>`;

async function interaction(req, res) {
  const m = req.url.match(/^\/interaction\/([^/?]+)(\/login)?/);
  if (!m) return false;
  try {
    if (req.method === 'GET' && !m[2]) {
      await provider.interactionDetails(req, res);
      res.writeHead(200, { 'content-type': 'text/html' });
      res.end(form(m[1]));
      return true;
    }
    if (req.method === 'POST' && m[2]) {
      let body = '';
      for await (const chunk of req) body += chunk;
      const login = new URLSearchParams(body).get('login');
      if (!accounts[login]) {
        res.writeHead(400, { 'content-type': 'text/plain' });
        res.end('no such account');
        return true;
      }
      await provider.interactionFinished(req, res, { login: { accountId: login } }, { mergeWithLastSubmission: false });
      return true;
    }
  } catch (e) {
    res.writeHead(400, { 'content-type': 'text/plain' });
    res.end(String(e));
    return true;
  }
  return false;
}

// The test's hand on the provider's directory: an account's groups.
async function testGroups(req, res) {
  if (req.method !== 'POST' || req.url !== '/_test/groups') return false;
  let body = '';
  for await (const chunk of req) body += chunk;
  const { sub, groups } = JSON.parse(body);
  if (!accounts[sub]) {
    res.writeHead(404, { 'content-type': 'text/plain' });
    res.end('no such account');
    return true;
  }
  accounts[sub].groups = groups;
  res.writeHead(204);
  res.end();
  return true;
}

const callback = provider.callback();
const server = https.createServer(
  { cert: fs.readFileSync(env('OIDC_CERT')), key: fs.readFileSync(env('OIDC_KEY')) },
  async (req, res) => {
    if (!(await testGroups(req, res)) && !(await interaction(req, res))) callback(req, res);
  },
);
server.listen(Number(env('OIDC_PORT')), '127.0.0.1', () => console.log('ready'));
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
