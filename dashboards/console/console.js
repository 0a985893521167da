// A small console over the gateway's HTTP API (docs/gateway.md): every call
// carries the bearer token typed into the page, so each role sees what its
// scope allows (a contractor: its own orders only; an auditor: records). It
// refreshes every two seconds.
//
// Served as /console.js: the page's Content-Security-Policy runs no inline
// script and no inline handler (docs/api-hardening.md). The token lives in
// this tab's sessionStorage only: gone when the tab closes, never shared
// with other tabs, never written to disk the way localStorage is.
"use strict";
const $ = (id) => document.getElementById(id);
const tokenBox = $("token");
const KEY = "fm-token";
// Consoles before this one kept the token in localStorage: take it away.
try { localStorage.removeItem(KEY); } catch (e) { /* storage disabled */ }
const store = {
  get: () => { try { return sessionStorage.getItem(KEY) || ""; } catch (e) { return ""; } },
  set: (t) => { try { if (t) sessionStorage.setItem(KEY, t); else sessionStorage.removeItem(KEY); } catch (e) { /* memory only */ } },
};
// A link with `#token=...` (what `gateway demo` prints) signs in at once; the
// fragment never reaches the server, and is taken off the address bar and
// out of the history entry at once.
if (location.hash.startsWith("#token=")) {
  store.set(decodeURIComponent(location.hash.slice(7)).trim());
  history.replaceState(null, "", location.pathname + location.search);
}
tokenBox.value = store.get();
// Refreshing stops after a refused token (401) until another is typed, and
// after a 429 until the gateway's Retry-After: a console left open with a
// wrong token must not lock its own address out.
let pausedUntil = 0;
let pausedWhy = "";
tokenBox.addEventListener("change", () => {
  store.set(tokenBox.value.trim());
  pausedUntil = 0;
  refresh();
});
$("signout").addEventListener("click", () => {
  store.set("");
  tokenBox.value = "";
  for (const id of ["alerts", "orders", "devices", "records"]) $(id).textContent = "";
  $("verify").textContent = "";
  $("status").textContent = "not signed in";
});
// The ack buttons are drawn into the alerts table: one listener for all.
$("alerts").addEventListener("click", (ev) => {
  const b = ev.target.closest("button[data-ack]");
  if (b) ack(b.dataset.ack);
});
const esc = (v) => String(v ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
const time = (ms) => (ms ? new Date(ms).toLocaleString() : "");
async function api(path, options = {}) {
  if (Date.now() < pausedUntil) throw new Error(pausedWhy);
  const r = await fetch(path, {
    ...options,
    credentials: "omit",
    cache: "no-store",
    headers: { Authorization: "Bearer " + tokenBox.value.trim(), "Content-Type": "application/json" },
  });
  if (r.status === 401) {
    pausedUntil = Infinity;
    pausedWhy = "unknown token";
    throw new Error("unknown token");
  }
  if (r.status === 429) {
    const wait = Math.max(1, parseInt(r.headers.get("Retry-After") || "60", 10) || 60);
    pausedUntil = Date.now() + wait * 1000;
    pausedWhy = "too many unknown tokens from this address: retrying in " + wait + " s";
    throw new Error(pausedWhy);
  }
  if (r.status === 403) throw new Error("outside this token's scope");
  if (!r.ok) throw new Error(path + ": " + r.status);
  return r.json();
}
function rows(id, head, list, row) {
  $(id).innerHTML = "<tr>" + head.map((h) => "<th>" + h + "</th>").join("") + "</tr>" +
    (list.length ? list.map(row).join("") : '<tr><td class="muted" colspan="' + head.length + '">none</td></tr>');
}
async function ack(id) {
  try { await api("/api/v1/alerts/" + encodeURIComponent(id) + "/ack", { method: "POST", body: "{}" }); } catch (e) { alert(e.message); }
  refresh();
}
async function section(id, load) {
  try { await load(); return true; } catch (e) { $(id).innerHTML = '<tr><td class="muted">' + esc(e.message) + "</td></tr>"; return false; }
}
let running = false;
async function refresh() {
  if (!tokenBox.value.trim() || running) return;
  if (Date.now() < pausedUntil) { $("status").textContent = pausedWhy; return; }
  running = true;
  try { await round(); } finally { running = false; }
}
async function round() {
  // One after another: a refused token stops the round at its first call.
  const ok = [];
  for (const [id, load] of [
    ["alerts", async () => {
      const a = (await api("/api/v1/alerts?limit=50")).alerts;
      rows("alerts", ["state", "severity", "device", "code", "since", ""], a, (x) =>
        "<tr><td>" + esc(x.state) + (x.inhibited_by ? ' <span class="muted">(' + esc(x.inhibited_by) + ")</span>" : "") +
        '</td><td class="' + esc(x.severity) + '">' + esc(x.severity) + "</td><td>" + esc(x.site) + "/" + esc(x.device) +
        (x.port ? " #" + esc(x.port) : "") + "</td><td>" + esc(x.code) + "</td><td>" + time(x.fired_at || x.since) + "</td><td>" +
        (x.state === "firing" ? '<button data-ack="' + esc(x.id) + '">ack</button>' : "") + "</td></tr>");
    }],
    ["orders", async () => {
      const o = (await api("/api/v1/work-orders?limit=50")).work_orders;
      rows("orders", ["#", "status", "device", "code", "contractor", "arrive by"], o, (x) =>
        "<tr><td>" + esc(x.id) + "</td><td>" + esc(x.status) + "</td><td>" + esc(x.device) + "</td><td>" + esc(x.code) +
        "</td><td>" + esc(x.contractor) + "</td><td>" + time(x.deadlines && x.deadlines.arrive) + "</td></tr>");
    }],
    ["devices", async () => {
      const d = (await api("/api/v1/devices")).devices;
      rows("devices", ["device", "class", "status", "last seen", "lost"], d, (x) =>
        "<tr><td>" + esc(x.site) + "/" + esc(x.device) + "</td><td>" + esc(x.class) + '</td><td class="' + esc(x.status) + '">' +
        esc(x.status) + "</td><td>" + time(x.last_seen_ms) + "</td><td>" + esc(x.lost) + "</td></tr>");
    }],
    ["records", async () => {
      const v = await api("/api/v1/records/verify");
      $("verify").textContent = (v.ok ? "chain verifies: " : "CHAIN DOES NOT VERIFY: ") + v.count + " records, " + v.checkpoints + " signed checkpoints";
      const r = (await api("/api/v1/records?limit=15&from=" + (Date.now() - 600000))).records;
      rows("records", ["seq", "time (last 10 min)", "kind", "subject"], r, (x) =>
        "<tr><td>" + esc(x.seq) + "</td><td>" + time(x.at) + "</td><td>" + esc(x.kind) + "</td><td>" + esc(x.subject) + "</td></tr>");
    }],
  ]) ok.push(await section(id, load));
  $("status").textContent = Date.now() < pausedUntil ? pausedWhy
    : ok.some(Boolean) ? "updated " + new Date().toLocaleTimeString() : "cannot read with this token";
}
refresh();
setInterval(refresh, 2000);
