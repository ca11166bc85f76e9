// The request inspector's page (issue 16): a port's recorded exchanges, live
// (server-sent events from the inspector API), their detail, replay as
// recorded or edited, copy as curl, and a HAR 1.2 export of the list.
// Everything comes from /api/v1 with the session; text from requests is only
// ever set as textContent, never as HTML.
"use strict";
(() => {
  const $ = (s) => document.querySelector(s);
  const parts = location.pathname.split("/").slice(3).map(decodeURIComponent);
  const [user, workspace, agent, port] = parts;
  const api = "/api/v1/workspaces/" + [user, workspace, "agents", agent, "ports", port].map(encodeURIComponent).join("/");
  const entries = new Map(); // id -> exchange
  let selected = null;

  const say = (t) => { $("#msg").textContent = t; };
  function el(tag, props, ...kids) {
    const e = document.createElement(tag);
    Object.assign(e, props || {});
    for (const k of kids) e.append(k);
    return e;
  }
  const ms = (v) => (v == null ? "" : v >= 1000 ? (v / 1000).toFixed(2) + " s" : v.toFixed(1) + " ms");
  const bytes = (n) => (n >= 1048576 ? (n / 1048576).toFixed(1) + " MiB" : n >= 1024 ? (n / 1024).toFixed(1) + " KiB" : n + " B");
  const pathOf = (e) => { try { const u = new URL(e.url); return u.pathname + u.search; } catch { return e.url; } };
  const bodyText = (b) => (b ? (b.encoding === "utf8" ? b.data : "(binary, base64) " + b.data) + (b.truncated ? "\n… (cut: more followed)" : "") : "");

  async function call(method, path, body) {
    const res = await fetch(api + path, {
      method,
      headers: body !== undefined ? {"content-type": "application/json"} : {},
      body: body !== undefined ? JSON.stringify(body) : undefined,
    });
    const data = res.status === 204 ? null : await res.json().catch(() => null);
    if (!res.ok) throw new Error(data && data.message ? data.message : "HTTP " + res.status);
    return data;
  }

  function row(e) {
    const tr = el("tr", {className: "s" + String(e.status)[0]});
    tr.dataset.id = e.id;
    const kind = e.kind === "http" ? (e.replay_of ? "replay" : "http") : e.kind;
    tr.append(
      el("td", {textContent: new Date(e.started_at_ms).toLocaleTimeString()}),
      el("td", {className: "method", textContent: e.method}),
      el("td", {className: "path", textContent: pathOf(e)}),
      el("td", {className: "status", textContent: e.status + (e.error ? " " + e.error : "")}),
      el("td", {className: "kind", textContent: kind}),
      el("td", {className: "duration", textContent: ms(e.duration_ms)}),
      el("td", {textContent: bytes(e.response_bytes)}),
    );
    tr.onclick = () => show(e.id);
    return tr;
  }

  // Adds exchanges (newest first in `list`) to the table, newest on top.
  function add(list, fresh) {
    const body = $("#requests tbody");
    for (const e of [...list].reverse()) {
      if (entries.has(e.id)) continue;
      entries.set(e.id, e);
      const tr = row(e);
      if (fresh) tr.classList.add("new");
      // Newest on top, whatever order the list and the live stream arrive in.
      const before = [...body.children].find((r) => entries.get(r.dataset.id).started_at_ms <= e.started_at_ms);
      body.insertBefore(tr, before || null);
    }
    $("#empty").hidden = entries.size > 0;
  }

  async function load(fresh) {
    const {requests} = await call("GET", "/requests");
    if (fresh) {
      entries.clear();
      $("#requests tbody").textContent = "";
    }
    add(requests, false);
  }

  function follow() {
    const es = new EventSource(api + "/requests");
    es.onopen = () => { $("#live").textContent = "live"; };
    es.addEventListener("exchange", (m) => add([JSON.parse(m.data)], true));
    es.addEventListener("lagged", () => load(false).catch((e) => say(e.message)));
    es.onerror = () => { $("#live").textContent = "reconnecting…"; };
  }

  function headersTable(t, headers) {
    t.textContent = "";
    for (const [k, v] of headers) t.append(el("tr", {}, el("td", {textContent: k}), el("td", {textContent: v})));
    if (!headers.length) t.append(el("tr", {}, el("td", {textContent: "(none)"})));
  }

  function show(id) {
    const e = entries.get(id);
    if (!e) return;
    selected = e;
    document.querySelectorAll("#requests tr.selected").forEach((r) => r.classList.remove("selected"));
    document.querySelector(`#requests tr[data-id="${CSS.escape(id)}"]`)?.classList.add("selected");
    $("#detail").hidden = false;
    $("#editor").hidden = true;
    $("#curl-text").hidden = true;
    $("#detail-title").textContent = `${e.method} ${pathOf(e)} → ${e.status}`;
    const meta = [
      e.kind === "http" ? null : `${e.kind}, open ${ms(e.duration_ms)}`,
      e.ttfb_ms != null ? `first byte ${ms(e.ttfb_ms)}` : null,
      `total ${ms(e.duration_ms)}`,
      `sent ${bytes(e.request_bytes)}, received ${bytes(e.response_bytes)}`,
      e.error ? `edge error ${e.error}` : null,
      e.replay_of ? `replay of ${e.replay_of}` : null,
      `id ${e.id}`,
      new Date(e.started_at_ms).toISOString(),
    ].filter(Boolean);
    $("#detail-meta").textContent = meta.join(" · ");
    $("#replay").disabled = $("#edit").disabled = e.kind === "websocket";
    headersTable($("#req-headers"), e.request_headers);
    headersTable($("#res-headers"), e.response_headers);
    $("#req-body").textContent = bodyText(e.request_body) || (e.request_bytes ? "(not recorded)" : "(empty)");
    $("#res-body").textContent = bodyText(e.response_body) || (e.response_bytes ? "(not recorded)" : "(empty)");
  }

  async function replay(edits) {
    if (!selected) return;
    try {
      const e = await call("POST", `/requests/${encodeURIComponent(selected.id)}/replay`, edits || {});
      add([e], true);
      say(`Replayed ${selected.id} as ${e.id}: ${e.status}.`);
      show(e.id);
    } catch (err) { say("Replay failed: " + err.message); }
  }

  function openEditor() {
    const e = selected, f = $("#editor");
    f.hidden = false;
    f.method.value = e.method;
    f.path.value = pathOf(e);
    f.headers.value = e.request_headers.map(([k, v]) => `${k}: ${v}`).join("\n");
    f.body.value = e.request_body && e.request_body.encoding === "utf8" ? e.request_body.data : "";
  }

  function sendEdited(ev) {
    ev.preventDefault();
    const f = $("#editor");
    const headers = f.headers.value.split("\n").map((l) => l.trim()).filter(Boolean).map((l) => {
      const i = l.indexOf(":");
      return i > 0 ? [l.slice(0, i).trim(), l.slice(i + 1).trim()] : [l, ""];
    });
    replay({method: f.method.value.trim(), path: f.path.value.trim(), headers, body: f.body.value});
  }

  // A shell word in single quotes.
  const sq = (s) => "'" + String(s).replace(/'/g, "'\\''") + "'";
  const SKIP = new Set(["host", "content-length", "transfer-encoding", "connection"]);
  function curl(e) {
    const words = ["curl"];
    if (e.method !== "GET" || e.request_body) words.push("-X", sq(e.method));
    words.push(sq(e.url));
    for (const [k, v] of e.request_headers) if (!SKIP.has(k.toLowerCase())) words.push("-H", sq(`${k}: ${v}`));
    let pre = "";
    if (e.request_body && e.request_body.encoding === "utf8") words.push("--data-binary", sq(e.request_body.data));
    else if (e.request_body) { pre = `printf %s ${sq(e.request_body.data)} | base64 -d | `; words.push("--data-binary", "@-"); }
    return pre + words.join(" ");
  }

  async function copyCurl() {
    if (!selected) return;
    const text = curl(selected);
    const pre = $("#curl-text");
    pre.textContent = text;
    pre.hidden = false;
    try { await navigator.clipboard.writeText(text); say("curl command copied."); }
    catch { window.getSelection().selectAllChildren(pre); say("Press Ctrl+C to copy the curl command."); }
  }

  // HAR 1.2 (http://www.softwareishard.com/blog/har-12-spec/) of the listed exchanges, oldest first.
  function har() {
    const nv = (h) => h.map(([name, value]) => ({name, value}));
    const mime = (h) => (h.find(([k]) => k.toLowerCase() === "content-type") || [])[1] || "";
    const list = [...entries.values()].sort((a, b) => a.started_at_ms - b.started_at_ms);
    return {log: {
      version: "1.2",
      creator: {name: "berth", version: "1"},
      pages: [],
      entries: list.map((e) => {
        const wait = e.ttfb_ms != null ? e.ttfb_ms : e.duration_ms;
        let query = [];
        try { query = [...new URL(e.url).searchParams].map(([name, value]) => ({name, value})); } catch { /* keep none */ }
        const request = {
          method: e.method, url: e.url, httpVersion: "HTTP/1.1", cookies: [], headers: nv(e.request_headers),
          queryString: query, headersSize: -1, bodySize: e.request_bytes,
        };
        if (e.request_body) {
          request.postData = {mimeType: mime(e.request_headers), text: e.request_body.data};
          if (e.request_body.encoding === "base64") request.postData.comment = "base64";
        }
        const content = {size: e.response_bytes, mimeType: mime(e.response_headers)};
        if (e.response_body) {
          content.text = e.response_body.data;
          if (e.response_body.encoding === "base64") content.encoding = "base64";
        }
        return {
          startedDateTime: new Date(e.started_at_ms).toISOString(),
          time: e.duration_ms,
          request,
          response: {
            status: e.status, statusText: "", httpVersion: "HTTP/1.1", cookies: [], headers: nv(e.response_headers),
            content, redirectURL: "", headersSize: -1, bodySize: e.response_bytes,
          },
          cache: {},
          timings: {send: 0, wait, receive: Math.max(0, e.duration_ms - wait)},
          comment: e.kind === "http" ? "" : `${e.kind}, open ${ms(e.duration_ms)}`,
          _berth: {id: e.id, kind: e.kind, replay_of: e.replay_of || null, error: e.error || null},
        };
      }),
    }};
  }

  function exportHar() {
    const blob = new Blob([JSON.stringify(har(), null, 2)], {type: "application/json"});
    const a = el("a", {href: URL.createObjectURL(blob), download: `berth-${workspace}-${agent}-${port}.har`});
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 10000);
    say(`Exported ${entries.size} requests as HAR.`);
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("#where").textContent = `${user}/${workspace} · ${agent} · port ${port}`;
    $("#replay").onclick = () => replay();
    $("#edit").onclick = openEditor;
    $("#cancel").onclick = () => { $("#editor").hidden = true; };
    $("#editor").onsubmit = sendEdited;
    $("#curl").onclick = copyCurl;
    $("#har").onclick = exportHar;
    $("#refresh").onclick = () => load(true).catch((e) => say(e.message));
    // Follow first, then list: nothing recorded in between is missed.
    follow();
    load(false).catch((e) => say(e.message));
  });
})();
