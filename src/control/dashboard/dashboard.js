// berth's dashboard: plain script over /api/v1 with the browser's session
// (writes carry the page's Origin, which the API checks). Parts, in order:
// helpers; the sharing policy (from /me); adding a machine; workspaces and
// agents, refreshed every few seconds; one port row (portRow); share links;
// people (admins); audit log (admins); regions.
"use strict";

// ---------------------------------------------------------------- helpers --
const POLL_MS = 3000;
const $ = (s) => document.querySelector(s);
const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", "\"": "&quot;", "'": "&#39;"}[c]));
async function api(method, path, body) {
  const res = await fetch("/api/v1" + path, {
    method, headers: body ? {"content-type": "application/json"} : {}, body: body ? JSON.stringify(body) : undefined,
  });
  const data = res.status === 204 ? null : await res.json();
  if (!res.ok) throw new Error(data && data.message ? data.message : String(res.status));
  return data;
}
const say = (t) => { $("#msg").textContent = t; };
// "1d 2h", "2h 5m", "12m", "40s": a duration in seconds, shortly.
function left(s) {
  s = Math.max(0, s); const d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600), m = Math.floor(s % 3600 / 60);
  return d ? `${d}d${h ? " " + h + "h" : ""}` : h ? `${h}h${m ? " " + m + "m" : ""}` : m ? `${m}m` : `${s}s`;
}
// "bob, @eng" -> users ["bob"], groups ["eng"].
function people(text) {
  const names = text.split(",").map((n) => n.trim()).filter(Boolean);
  return {users: names.filter((n) => !n.startsWith("@")), groups: names.filter((n) => n.startsWith("@")).map((n) => n.slice(1))};
}
// Puts `text` on the clipboard, or selects `el` for Ctrl+C where that is refused.
async function copy(text, el, button) {
  try { await navigator.clipboard.writeText(text); button.textContent = "Copied"; }
  catch { window.getSelection().selectAllChildren(el); button.textContent = "Press Ctrl+C"; }
}
const html = (s) => { const t = document.createElement("template"); t.innerHTML = s.trim(); return t.content.firstElementChild; };

// ------------------------------------------------------- sharing policy --
// Who a level lets in, as the row says it once in force.
const EFFECT = {
  owner: "Only the owner and site admins can open it.",
  organization: "Members of the owner's organization can open it.",
  authenticated: "Anyone signed in to this berth can open it.",
  public: "Anyone with the URL can open it, without signing in.",
};
let me = null;
// Link lifetimes offered: the usual ones up to sharing.max_link_ttl_secs,
// and that maximum itself when it is not one of them.
function linkChoices() {
  const max = me.sharing.max_link_ttl_secs;
  const usual = [["1 hour", 3600], ["2 hours", 7200], ["24 hours", 86400], ["7 days", 604800], ["30 days", 2592000]];
  const out = usual.filter(([, s]) => s <= max);
  if (!out.some(([, s]) => s === max)) out.push([`${left(max)} (longest allowed)`, max]);
  return out;
}
// Share endings offered: up to sharing.max_share_ttl_secs when it is set
// (then "no end" means the policy's longest for public and authenticated).
function endChoices() {
  const max = me.sharing.max_share_ttl_secs;
  const usual = [["1 hour", 3600], ["8 hours", 28800], ["24 hours", 86400], ["7 days", 604800]];
  return [[max ? `no end (at most ${left(max)})` : "no end", ""], ...usual.filter(([, s]) => !max || s <= max)];
}

// ------------------------------------------------------ add a machine --
let myWorkspaces = [];
// The agent just added ("owner/workspace/agent"), until it connects.
let pending = null;
async function addMachine(ev) {
  ev.preventDefault();
  const ws = $("#add-ws").value.trim(), agent = $("#add-agent").value.trim();
  try {
    if (!myWorkspaces.some((w) => w.owner === me.username && w.name === ws)) await api("POST", "/workspaces", {name: ws});
    const a = await api("POST", `/workspaces/${encodeURIComponent(me.username)}/${encodeURIComponent(ws)}/agents`, {name: agent});
    $("#agent-command").textContent = a.command;
    $("#copy-command").textContent = "Copy";
    const ca = (a.command.match(/--ca-file (.+)$/) || [])[1];
    $("#add-note").textContent = (ca ? `Copy ${ca} to that machine first, or change --ca-file to where it is there. ` : "") +
      `Its ports are then at ${a.url_template}.`;
    $("#add-result").hidden = false;
    pending = `${me.username}/${ws}/${agent}`;
    say(`Agent ${agent} created in workspace ${me.username}/${ws}; waiting for it to connect.`);
    await refresh();
  } catch (e) { say(e.message); }
}

// ------------------------------------------- workspaces, agents, ports --
// One section per agent, keyed "owner/workspace/agent"; rows keyed by port.
async function refresh() {
  const workspaces = await api("GET", "/workspaces");
  myWorkspaces = workspaces;
  $("#my-workspaces").innerHTML = workspaces.filter((w) => w.owner === me.username).map((w) => `<option value="${esc(w.name)}">`).join("");
  const root = $("#workspaces");
  const agents = workspaces.flatMap((ws) => ws.agents.map((agent) => ({ws, agent})));
  if (agents.length === 0) {
    $("#add-title").textContent = "Create a workspace";
    if (!$("#empty")) {
      root.innerHTML = "";
      root.appendChild(html(`<section id="empty" class="empty"><h2>No workspaces yet</h2>
        <p>Your apps run on machines you connect to berth. Create a workspace with an agent, run the command it gives you
        on that machine, and its ports show up here, ready to open and share.</p>
        <button id="empty-create" type="button">Create a workspace</button></section>`));
      $("#empty-create").onclick = () => { $("#add-section").scrollIntoView(); $("#add-ws").focus(); };
    }
    return;
  }
  $("#add-title").textContent = "Add a machine";
  $("#empty")?.remove();
  root.querySelector("p.muted")?.remove();
  const keep = new Set();
  const answers = await Promise.all(agents.map(({ws, agent}) =>
    api("GET", `/workspaces/${ws.owner}/${ws.name}/agents/${agent.name}/ports`).catch((e) => ({error: e.message}))));
  agents.forEach(({ws, agent}, i) => {
    const key = `${ws.owner}/${ws.name}/${agent.name}`;
    keep.add(key);
    let sec = root.querySelector(`section[data-agent="${CSS.escape(key)}"]`);
    if (!sec) {
      sec = html(`<section data-agent="${esc(key)}"><h2>${esc(ws.owner)}/${esc(ws.name)} · ${esc(agent.name)} <span class="state"></span></h2>
        <p class="waiting"></p><div class="wrap"><table hidden><thead><tr><th>Port</th><th>State</th><th>Names</th><th>Who may open it</th>
        <th>URL</th><th>Share link</th></tr></thead><tbody></tbody></table></div></section>`);
      root.appendChild(sec);
    }
    renderAgent(sec, {ws, agent: agent.name}, agent.connected, answers[i]);
  });
  root.querySelectorAll("section[data-agent]").forEach((s) => { if (!keep.has(s.dataset.agent)) s.remove(); });
}

// An agent's section: its connection state, then one row per port.
function renderAgent(sec, ctx, connected, answer) {
  const state = sec.querySelector(".state");
  state.className = `state ${connected ? "on" : "off"}`;
  state.textContent = connected ? "connected" : "offline";
  if (connected && sec.dataset.agent === pending) {
    pending = null;
    say(`Agent ${sec.dataset.agent} is connected: its ports are listed below.`);
  }
  const waiting = sec.querySelector(".waiting");
  const ports = answer.ports || [];
  waiting.textContent = answer.error || (ports.length ? "" : connected
    ? "Nothing is listening yet: start your app on this machine and it shows up here."
    : "Offline: run the agent command from \"Add a machine\" on that machine (or start its agent again).");
  waiting.hidden = !waiting.textContent;
  const table = sec.querySelector("table"), body = table.querySelector("tbody");
  table.hidden = ports.length === 0;
  ctx.levels = answer.levels || ["owner"];
  const seen = new Set();
  for (const p of ports) {
    seen.add(String(p.port));
    const old = body.querySelector(`tr[data-port="${p.port}"]`);
    const sig = rowSig(ctx, p);
    // A row being used (focus inside, or a request under way) waits for the next round.
    if (old && (old.dataset.sig === sig || old.contains(document.activeElement) || old.dataset.busy)) continue;
    const row = portRow(ctx, p);
    if (old) old.replaceWith(row);
    else {
      const next = [...body.children].find((tr) => Number(tr.dataset.port) > p.port);
      body.insertBefore(row, next || null);
    }
  }
  body.querySelectorAll("tr[data-port]").forEach((tr) => { if (!seen.has(tr.dataset.port) && !tr.dataset.busy) tr.remove(); });
}

// The URL of a port on the fastest region (its own `url` is control's).
function bestUrl(p) {
  const urls = {control: p.url, ...(p.region_urls || {})};
  const name = nearest(Object.keys(urls)) || "control";
  return {name, url: urls[name]};
}

// ---------------------------------------------------------- a port row --
// What a row shows, to tell whether a refresh changes it.
const rowSig = (ctx, p) => JSON.stringify([p.level, p.users, p.groups, p.listening, p.process, p.apps, p.url, p.region_urls, p.expires_at, ctx.levels]);
// One port: its names, who may open it (with what that means), its URL and
// a share link. `ctx` is {ws, agent, levels}: the levels the policy allows.
function portRow(ctx, p) {
  const base = `/workspaces/${ctx.ws.owner}/${ctx.ws.name}/agents/${ctx.agent}`;
  const levels = ctx.levels.includes(p.level) ? ctx.levels : [...ctx.levels, p.level];
  const named = [...(p.users || []), ...(p.groups || []).map((g) => "@" + g)];
  const b = bestUrl(p);
  const tr = html(`<table><tr data-port="${p.port}" data-level="${esc(p.level)}">
    <td>${p.port} <a class="inspect" href="/dashboard/inspect/${[ctx.ws.owner, ctx.ws.name, ctx.agent, p.port].map(encodeURIComponent).join("/")}" title="Requests to port ${p.port}, live">Inspect</a></td>
    <td>${p.listening ? "listening" : "—"}${p.process ? ` <span class="muted process" title="${esc(p.command || "")}">${esc(p.process)}</span>` : ""}</td>
    <td>${(p.apps || []).map((a) => `<span class="chip" data-app="${esc(a.name)}"><a href="${esc(a.url)}" target="_blank" rel="noopener">${esc(a.name)}</a><button class="unname" type="button" aria-label="Remove the name ${esc(a.name)}">×</button></span>`).join("")}
      <input class="app-name" size="8" placeholder="name" aria-label="Name port ${p.port}"> <button class="name" type="button">Name</button></td>
    <td><select class="level" aria-label="Who may open port ${p.port}">${levels.map((l) => `<option${l === p.level ? " selected" : ""}${ctx.levels.includes(l) ? "" : " disabled"}>${l}</option>`).join("")}</select>
      <input class="names" size="12" placeholder="users, @groups" aria-label="Also these users and @groups on port ${p.port}" value="${esc(named.join(", "))}">
      <select class="ends" aria-label="The share of port ${p.port} ends after">${endChoices().map(([t, s]) => `<option value="${s}">${esc(t)}</option>`).join("")}</select>
      <button class="apply" type="button">Share</button>
      <div class="effect ${esc(p.level)}">${esc(EFFECT[p.level] || p.level)}${named.length ? esc(` Also: ${named.join(", ")}.`) : ""}${p.expires_in_secs != null ? ` <span class="ends-in">Ends in ${esc(left(p.expires_in_secs))}.</span>` : ""}</div></td>
    <td><a class="app" data-region="${esc(b.name)}" href="${esc(b.url)}" target="_blank" rel="noopener">${esc(b.url)}</a>${Object.keys(p.region_urls || {}).length ? ` <span class="muted">via ${esc(b.name)}</span>` : ""}</td>
    <td><select class="ttl" aria-label="Link for port ${p.port} expires in">${linkChoices().map(([t, s]) => `<option value="${s}"${s === 7200 ? " selected" : ""}>${esc(t)}</option>`).join("")}</select>
      <input class="max-uses" type="number" min="1" size="4" placeholder="any" aria-label="Link for port ${p.port} opens at most this many times">
      <button class="mklink" type="button">Create link</button></td>
  </tr></table>`).querySelector("tr");
  tr.dataset.sig = rowSig(ctx, p);
  const busy = async (fn) => { tr.dataset.busy = "1"; try { await fn(); } finally { delete tr.dataset.busy; } };
  const effect = tr.querySelector(".effect");
  const level = tr.querySelector("select.level");
  const apply = () => busy(async () => {
    const want = level.value;
    if (want === "public" && p.level !== "public" && !(await confirmPublic(p.port))) {
      level.value = p.level;
      say(`Port ${p.port} stays ${p.level}.`);
      return;
    }
    const {users, groups} = people(tr.querySelector("input.names").value);
    const ttl = tr.querySelector("select.ends").value;
    try {
      let s;
      // A port's CORS choice (set through the API or CLI) survives a level change.
      if (want === "owner" && p.cors !== "passthru" && !users.length && !groups.length && !ttl) {
        await api("DELETE", base + `/ports/${p.port}/share`);
        s = {level: "owner", users: [], groups: [], expires_in_secs: null};
      } else {
        const body = {level: want, protocol: p.protocol, cors: p.cors, users, groups};
        if (ttl) body.ttl_seconds = Number(ttl);
        s = await api("PUT", base + `/ports/${p.port}/share`, body);
      }
      const also = [...s.users, ...s.groups.map((g) => "@" + g)];
      say(`Port ${p.port} is now ${s.level}${also.length ? ", and " + also.join(", ") : ""}` +
        (s.expires_in_secs != null ? `, for ${left(s.expires_in_secs)}.` : "."));
      Object.assign(p, {level: s.level, users: s.users, groups: s.groups, expires_in_secs: s.expires_in_secs, expires_at: s.expires_at ?? null});
      const row = portRow(ctx, p);
      tr.replaceWith(row);
    } catch (e) {
      // Refused: say why, and show the level actually in force.
      say(e.message);
      level.value = p.level;
      effect.className = "effect refused";
      effect.textContent = `Refused: ${e.message} Still ${p.level}: ${EFFECT[p.level] || ""}`;
    }
  });
  level.onchange = apply;
  tr.querySelector("button.apply").onclick = apply;
  tr.querySelector("button.name").onclick = () => busy(async () => {
    const name = tr.querySelector("input.app-name").value.trim();
    try {
      const a = await api("PUT", base + `/apps/${encodeURIComponent(name)}`, {port: p.port, protocol: p.protocol});
      say(`Port ${p.port} is now also at ${a.url}.`);
      p.apps = [...(p.apps || []).filter((x) => x.name !== a.name), a];
      tr.replaceWith(portRow(ctx, p));
    } catch (e) { say(e.message); }
  });
  tr.querySelectorAll("button.unname").forEach((btn) => btn.onclick = () => busy(async () => {
    const name = btn.parentElement.dataset.app;
    try {
      await api("DELETE", base + `/apps/${encodeURIComponent(name)}`);
      say(`The name ${name} is gone from port ${p.port}.`);
      p.apps = (p.apps || []).filter((x) => x.name !== name);
      tr.replaceWith(portRow(ctx, p));
    } catch (e) { say(e.message); }
  }));
  tr.querySelector("button.mklink").onclick = () => busy(() => link(ctx, p.port,
    Number(tr.querySelector("select.ttl").value), tr.querySelector("input.max-uses").value));
  return tr;
}

// Asks before a port goes public; resolves true to go ahead.
function confirmPublic(port) {
  const d = $("#confirm");
  $("#confirm-text").textContent = `Make port ${port} public? Anyone who has its URL can open it, without signing in, until you change it back.`;
  return new Promise((resolve) => {
    const done = (yes) => { d.close(); resolve(yes); };
    $("#confirm-yes").onclick = () => done(true);
    $("#confirm-no").onclick = () => done(false);
    d.oncancel = () => resolve(false);
    d.showModal();
  });
}

// ---------------------------------------------------------- share links --
async function link(ctx, port, ttl, maxUses) {
  try {
    const body = {user: ctx.ws.owner, workspace: ctx.ws.name, agent: ctx.agent, port, ttl_seconds: ttl};
    if (maxUses) body.max_uses = Number(maxUses);
    const l = await api("POST", "/share-links", body);
    say("");
    $("#msg").innerHTML = `Link for port ${port} (expires ${esc(l.expires_at)}${l.max_uses ? `, opens ${l.max_uses} time${l.max_uses > 1 ? "s" : ""}` : ""}): ` +
      `<code id="new-link">${esc(l.url)}</code> <button id="copy-link" type="button">Copy</button>`;
    $("#copy-link").onclick = () => copy(l.url, $("#new-link"), $("#copy-link"));
    await loadLinks();
  } catch (e) { say(e.message); }
}
async function revoke(id) {
  try { await api("DELETE", `/share-links/${id}`); say("Link revoked."); await loadLinks(); } catch (e) { say(e.message); }
}
const STATUS = {active: "active", used_up: "used up", expired: "expired", revoked: "revoked"};
// Every live link, and the latest 20 that ended, with where each stands.
async function loadLinks() {
  const links = await api("GET", "/share-links");
  const live = links.filter((l) => l.status === "active");
  const ended = links.filter((l) => l.status !== "active").slice(-20);
  const shown = [...live, ...ended];
  const sig = JSON.stringify(shown.map((l) => [l.id, l.status, l.uses]));
  if ($("#links").dataset.sig === sig) return;
  $("#links").dataset.sig = sig;
  $("#links").innerHTML = shown.length === 0 ? "None yet: make one from a port's row." :
    "<table><thead><tr><th>Port</th><th>Workspace</th><th>Expires (UTC)</th><th>Uses</th><th>Status</th><th></th></tr></thead><tbody>" +
    shown.map((l) => `<tr data-link="${esc(l.id)}" data-status="${esc(l.status)}"><td>${l.port}</td><td>${esc(l.user)}/${esc(l.workspace)}/${esc(l.agent)}</td>` +
      `<td>${esc(l.expires_at.replace("T", " ").replace("Z", ""))}</td><td>${l.uses}${l.max_uses ? " / " + l.max_uses : ""}</td>` +
      `<td><span class="status ${esc(l.status)}">${esc(STATUS[l.status] || l.status)}</span></td>` +
      `<td>${l.status === "active" ? `<button type="button" data-revoke="${esc(l.id)}">Revoke</button>` : ""}</td></tr>`).join("") + "</tbody></table>";
  document.querySelectorAll("[data-revoke]").forEach((b) => b.onclick = () => revoke(b.dataset.revoke));
}

// -------------------------------------------------------------- people --
async function loadUsers() {
  const users = await api("GET", "/users");
  $("#users-section").hidden = false;
  $("#users").innerHTML = "<table><thead><tr><th>User</th><th>Role</th><th>E-mail</th><th>Organization</th></tr></thead><tbody>" +
    users.map((u) => `<tr data-user="${esc(u.username)}"><td>${esc(u.username)}</td><td>${esc(u.role)}</td><td>${esc(u.email)}</td>` +
      `<td>${esc(u.organization || "")}</td></tr>`).join("") + "</tbody></table>";
}
async function addUser(ev) {
  ev.preventDefault();
  const username = $("#user-name").value.trim();
  try {
    await api("POST", "/users", {username, email: $("#user-email").value.trim(), password: $("#user-password").value, role: $("#user-role").value});
    say(`${username} can now sign in here with that password (and change it with berth users passwd).`);
    $("#user-form").reset();
    await loadUsers();
  } catch (e) { say(e.message); }
}

// ------------------------------------------------------------- audit --
async function loadAudit() {
  const events = await api("GET", "/audit?limit=50");
  $("#audit-section").hidden = false;
  $("#audit").innerHTML = events.length === 0 ? "Nothing yet." :
    "<table><tr><th>When (UTC)</th><th>Who</th><th>What</th><th>Target</th><th>From</th></tr>" +
    events.map((e) => `<tr><td>${esc(e.at.replace("T", " ").replace("Z", ""))}</td><td>${esc(e.actor)}</td>` +
      `<td>${esc(e.action)}</td><td>${esc(e.target)}</td><td>${esc(e.source)}</td></tr>`).join("") + "</table>";
}

// ----------------------------------------------------------- regions --
// Region name -> round trip in ms measured from this browser (control is "control").
const rtt = {};
// The best of three timed requests to an edge's /healthz (the first one pays
// for the TLS handshake); no-cors, so any edge answers without CORS headers.
async function timeEdge(origin) {
  let best = Infinity;
  for (let i = 0; i < 3; i++) {
    const t0 = performance.now();
    try {
      await fetch(origin + "/healthz", {mode: "no-cors", cache: "no-store"});
      best = Math.min(best, performance.now() - t0);
    } catch { /* unreachable from here */ }
  }
  return best;
}
async function measureRegions() {
  const regions = (await api("GET", "/regions")).filter((r) => r.healthy);
  if (regions.length === 0) return;
  const all = [{name: "control", url: location.origin}, ...regions];
  await Promise.all(all.map(async (r) => { rtt[r.name] = await timeEdge(r.url.replace(/\/$/, "")); }));
  const fastest = nearest(Object.keys(rtt));
  $("#regions-section").hidden = false;
  $("#regions").innerHTML = "<table><tr><th>Region</th><th>Edge</th><th>Round trip</th></tr>" +
    all.map((r) => `<tr data-region="${esc(r.name)}"><td>${esc(r.name)}${r.name === fastest ? " <b>(fastest)</b>" : ""}</td>` +
      `<td>${esc(r.url)}</td><td class="rtt">${isFinite(rtt[r.name]) ? Math.round(rtt[r.name]) + " ms" : "unreachable"}</td></tr>`).join("") +
    "</table>";
}
// The measured region with the shortest round trip among `names`.
function nearest(names) {
  return names.filter((n) => isFinite(rtt[n])).sort((a, b) => rtt[a] - rtt[b])[0];
}

// -------------------------------------------------------------- start --
// Ports, agents' connection state and links, again every POLL_MS while the
// page is visible (a hidden tab asks nothing; it catches up when shown).
async function poll() {
  if (!document.hidden) {
    try { await refresh(); await loadLinks(); } catch (e) { say(e.message); }
  }
  setTimeout(poll, POLL_MS);
}
async function load() {
  me = await api("GET", "/me");
  $("#who").textContent = `${me.username} (${me.role}) `;
  $("#add-form").onsubmit = addMachine;
  $("#copy-command").onclick = () => copy($("#agent-command").textContent, $("#agent-command"), $("#copy-command"));
  $("#user-form").onsubmit = addUser;
  try { await measureRegions(); } catch (e) { say(e.message); }
  await refresh();
  await loadLinks();
  if (me.role === "admin") await Promise.all([loadUsers(), loadAudit()]);
  setTimeout(poll, POLL_MS);
}
document.addEventListener("DOMContentLoaded", () => load().catch((e) => say(e.message)));
