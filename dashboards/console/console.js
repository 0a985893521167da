// The web console (docs/console.md): one page over the gateway's HTTP API,
// a view per role (the token's role, from /api/v1/me): the property
// engineer's alert board, devices and device pages; the contractor's orders
// on a phone; the auditor's records, chain and monthly report.
//
// Lists are read once at sign-in (and again when the stream says `reset` or
// `lagged`); after that the event stream (/api/v1/events) keeps them current,
// resumed with Last-Event-ID after a break. Nothing is polled but the device
// registry (an in-memory snapshot, while its view is open); the record chain
// is verified only on request.
//
// Served as /console.js under a Content-Security-Policy that runs no inline
// script, style or handler: everything is wired here, by delegation. The
// token lives in this tab's sessionStorage only (never localStorage: that
// is on disk and shared by tabs); the language and the mute switch, which
// are not secrets, live in localStorage.
"use strict";
import { chart, nearest, fmtValue } from "./console-chart.js";

const $ = (id) => document.getElementById(id);
const esc = (v) => String(v ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
const enc = encodeURIComponent;

// ---------------------------------------------------------------- strings --
// The console's own words (buttons, headings). Codes, states, classes,
// severities, statuses, record kinds, roles and metrics come from the
// gateway's one table, /api/v1/labels (L below).
const UI = {
  zh: {
    signin: "登录", token: "访问令牌", tokenHint: "令牌由 gateway run / gateway-demo 打印；只保存在本标签页", signout: "退出",
    unknownToken: "令牌无效（401）", unreachable: "无法连接网关，{s} 秒后重试", tooMany: "无效令牌过多，{s} 秒后再试", forbidden: "超出此令牌的权限",
    live: "已连接", connecting: "连接中", reconnecting: "重连中", offline: "离线",
    board: "告警", devices: "设备", orders: "工单", myOrders: "我的工单", records: "监督记录", report: "月报",
    openAlerts: "未恢复告警", noAlerts: "没有未恢复的告警", recentResolved: "最近恢复", noBuilding: "未分楼栋",
    ack: "确认", ackedBy: "{by} 已确认", since: "开始", firedAt: "触发", port: "端口", online: "在线",
    device: "设备", klass: "类别", status: "状态", lastSeen: "最近上报", fw: "固件", lost: "丢包", building: "楼栋", site: "小区",
    mute: "静音", unmute: "开启声音", soundOff: "已静音", soundOn: "严重告警会响铃",
    back: "返回", alertHistory: "告警历史", orderHistory: "工单历史", charts: "曲线", noData: "此时段无数据",
    range: "时段", h1: "1 小时", h6: "6 小时", h24: "24 小时", d7: "7 天", refresh: "刷新",
    respond: "接单/响应", arrive: "到场", complete: "完成", falseAlarm: "误报", note: "备注（可选）",
    dueRespond: "响应", dueArrive: "到场", dueComplete: "完成", dueBureau: "上报主管部门",
    left: "剩余 {t}", overdue: "已超时 {t}", open: "进行中", closed: "已关闭", noOrders: "没有工单",
    redispatched: "已转派给 {c}", flagged: "已上报主管部门", escalated: "超时升级",
    createdAt: "派单", contractor: "维保单位",
    search: "查询", kind: "类型", from: "从", to: "到", all: "全部", more: "更多", noRecords: "没有符合条件的记录",
    exportCsv: "导出 CSV", exportJson: "导出 JSON", chain: "记录链", verify: "校验记录链", verifying: "正在校验…",
    chainOk: "记录链完整：{n} 条记录，{c} 个签名检查点", chainBad: "记录链不完整：{p}", notVerified: "尚未校验（校验会读取整条链）",
    newRecords: "{n} 条新记录", show: "显示",
    month: "月份", makeReport: "生成月报", downloadCsv: "下载 CSV", faults: "故障统计", count: "次数",
    kpiRespond: "响应（{s}内）", kpiArrive: "到场（{s}内）", ownDeadline: "各自时限", withinKpi: "达标", rate: "达标率", missed: "超时", duties: "定期任务",
    ordersTotal: "故障工单", completed: "已完成", falseAlarms: "误报", stillOpen: "未关闭", bureauFlagged: "上报主管部门",
    due: "应做", onTime: "按时", late: "迟做", pending: "待做",
    seq: "序号", time: "时间", subject: "对象", body: "内容",
    done: "已提交", failed: "失败", ago: "{t}前", sec: "秒", min: "分", hour: "小时", day: "天",
    noRole: "此令牌的角色没有可用视图",
    commands: "远程指令", cutOff: "切断端口", selfTest: "启动巡检", allPorts: "全部端口", sentBy: "{by} 下发",
    inspectFirst: "本周优先检查", score: "健康分",
  },
  en: {
    signin: "Sign in", token: "Access token", tokenHint: "printed by gateway run / gateway-demo; kept in this tab only", signout: "Sign out",
    unknownToken: "unknown token (401)", unreachable: "the gateway cannot be reached: trying again in {s} s", tooMany: "too many unknown tokens: retrying in {s} s", forbidden: "outside this token's scope",
    live: "Connected", connecting: "Connecting", reconnecting: "Reconnecting", offline: "Offline",
    board: "Alerts", devices: "Devices", orders: "Work orders", myOrders: "My orders", records: "Records", report: "Monthly report",
    openAlerts: "Open alerts", noAlerts: "No open alerts", recentResolved: "Recently resolved", noBuilding: "No building",
    ack: "Acknowledge", ackedBy: "acknowledged by {by}", since: "since", firedAt: "fired", port: "port", online: "online",
    device: "Device", klass: "Class", status: "Status", lastSeen: "Last seen", fw: "Firmware", lost: "Lost", building: "Building", site: "Compound",
    mute: "Mute", unmute: "Unmute", soundOff: "muted", soundOn: "critical alerts beep",
    back: "Back", alertHistory: "Alert history", orderHistory: "Work-order history", charts: "Charts", noData: "no data in this range",
    range: "Range", h1: "1 h", h6: "6 h", h24: "24 h", d7: "7 days", refresh: "Refresh",
    respond: "Respond", arrive: "Arrive", complete: "Complete", falseAlarm: "False alarm", note: "Note (optional)",
    dueRespond: "respond", dueArrive: "arrive", dueComplete: "complete", dueBureau: "bureau limit",
    left: "{t} left", overdue: "overdue {t}", open: "Open", closed: "Closed", noOrders: "No work orders",
    redispatched: "re-dispatched to {c}", flagged: "flagged for the bureau", escalated: "escalated",
    createdAt: "dispatched", contractor: "Contractor",
    search: "Search", kind: "Kind", from: "From", to: "To", all: "all", more: "More", noRecords: "No records match",
    exportCsv: "Export CSV", exportJson: "Export JSON", chain: "Record chain", verify: "Verify the chain", verifying: "Verifying…",
    chainOk: "The chain verifies: {n} records, {c} signed checkpoints", chainBad: "The chain does NOT verify: {p}", notVerified: "Not verified yet (verifying reads the whole chain)",
    newRecords: "{n} new records", show: "Show",
    month: "Month", makeReport: "Make the report", downloadCsv: "Download CSV", faults: "Faults", count: "Count",
    kpiRespond: "Response (within {s})", kpiArrive: "Arrival (within {s})", ownDeadline: "each its own deadline", withinKpi: "within", rate: "rate", missed: "Missed deadlines", duties: "Periodic duties",
    ordersTotal: "Corrective orders", completed: "completed", falseAlarms: "false alarms", stillOpen: "open", bureauFlagged: "flagged for the bureau",
    due: "due", onTime: "on time", late: "late", pending: "pending",
    seq: "Seq", time: "Time", subject: "Subject", body: "Body",
    done: "Done", failed: "Failed", ago: "{t} ago", sec: "s", min: "min", hour: "h", day: "d",
    noRole: "This token's role has no view",
    commands: "Remote commands", cutOff: "Cut off port", selfTest: "Start self-test", allPorts: "all ports", sentBy: "sent by {by}",
    inspectFirst: "Inspect first this week", score: "health",
  },
};

/** The console's own word, with `{name}` holes filled. */
function t(key, vars) {
  let s = (UI[S.lang] && UI[S.lang][key]) ?? UI.zh[key] ?? key;
  if (vars) for (const [k, v] of Object.entries(vars)) s = s.replace("{" + k + "}", v);
  return s;
}

/** A label from the gateway's table (`codes`, `classes`, ...), or the raw key. */
function L(group, key, zhFallback) {
  const e = S.labels && S.labels[group] && S.labels[group][key];
  if (e && e[S.lang]) return e[S.lang];
  if (S.lang === "zh" && zhFallback) return zhFallback;
  return key ?? "";
}

// ------------------------------------------------------------------ state --
const TOKEN = "fm-token";
const LANG = "fm-lang";
const MUTE = "fm-mute";
// Consoles before this one kept the token in localStorage: take it away.
try { localStorage.removeItem(TOKEN); } catch (e) { /* storage disabled */ }
const session = {
  get: () => { try { return sessionStorage.getItem(TOKEN) || ""; } catch (e) { return ""; } },
  set: (v) => { try { if (v) sessionStorage.setItem(TOKEN, v); else sessionStorage.removeItem(TOKEN); } catch (e) { /* memory only */ } },
};
const local = {
  get: (k) => { try { return localStorage.getItem(k); } catch (e) { return null; } },
  set: (k, v) => { try { localStorage.setItem(k, v); } catch (e) { /* not remembered */ } },
};

const S = {
  token: "",
  lang: local.get(LANG) === "en" ? "en" : "zh",
  muted: local.get(MUTE) === "1",
  me: null,
  labels: {},
  gen: 0, // bumped at sign-in and sign-out: stale loops and answers stop
  conn: "offline",
  lastId: null,
  everLive: false,
  abort: null,
  pausedUntil: 0,
  skew: 0, // the gateway's clock minus ours (ms), from the Date header
  alerts: new Map(),
  orders: new Map(),
  devices: new Map(),
  inspect: [], // the least healthy devices (/api/v1/health), for the board
  drafts: new Map(), // note text per order, kept across re-renders
  cmdPort: "", // the port typed for a cut-off, kept across re-renders
  newRecords: 0,
  beeps: 0,
  records: { list: [], next: null, query: null, loading: false },
  chainResult: null,
  verifying: null,
  report: null,
  device: null, // the device page's own data
  range: 3600_000, // the device page's charts: the last hour first
  port: 1,
};
const now = () => Date.now() + S.skew;

// -------------------------------------------------------------------- API --
class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

/** A call with the token; JSON back (or the Response with `raw`). 401 signs out, 429 pauses. */
async function api(path, { method = "GET", body, accept, raw = false } = {}) {
  if (Date.now() < S.pausedUntil) throw new ApiError(429, t("tooMany", { s: Math.ceil((S.pausedUntil - Date.now()) / 1000) }));
  const gen = S.gen;
  const headers = { Authorization: "Bearer " + S.token };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (accept) headers.Accept = accept;
  const r = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), credentials: "omit", cache: "no-store" });
  // The Date header has whole seconds: follow it only when the clocks
  // differ by more than that, so countdowns do not jitter.
  const date = Date.parse(r.headers.get("Date") || "");
  if (Number.isFinite(date) && Math.abs(date + 500 - Date.now() - S.skew) > 1500) S.skew = date + 500 - Date.now();
  if (gen !== S.gen) throw new ApiError(0, "signed out");
  if (r.status === 401) { refused(t("unknownToken")); throw new ApiError(401, t("unknownToken")); }
  if (r.status === 429) {
    const wait = Math.max(1, parseInt(r.headers.get("Retry-After") || "60", 10) || 60);
    S.pausedUntil = Date.now() + wait * 1000;
    throw new ApiError(429, t("tooMany", { s: wait }));
  }
  if (!r.ok) {
    let detail = "";
    try { const j = await r.json(); detail = j.detail || j.error || ""; } catch (e) { /* not JSON */ }
    throw new ApiError(r.status, (r.status === 403 ? t("forbidden") + ": " : r.status + ": ") + detail);
  }
  return raw ? r : r.json();
}

/** Who the token is: /api/v1/me; a gateway without it is asked what the token may read. */
async function whoAmI() {
  try { return await api("/api/v1/me"); } catch (e) { if (e.status !== 404) throw e; }
  const may = async (path) => {
    try { await api(path, { raw: true }); return true; } catch (e) { if (e.status === 403) return false; throw e; }
  };
  if (await may("/metrics")) return { name: "", role: "engineer", sites: null, contractor: null };
  if (await may("/api/v1/records?limit=1")) return { name: "", role: "auditor", sites: null, contractor: null };
  return { name: "", role: "contractor", sites: null, contractor: null };
}

// ------------------------------------------------------- merging changes --
// The lists and the stream race at sign-in (and after a reset): an answer
// may be older than an event already applied. Changes only ever move an
// alert or an order forward, so the older of two versions is never applied.
const ALERT_RANK = { pending: 0, firing: 1, acknowledged: 2, resolved: 3 };
const ORDER_RANK = { dispatched: 0, responded: 1, arrived: 2, completed: 3, false_alarm: 3 };
const progress = (o) => (o.steps ? o.steps.length : 0) + (o.escalations ? o.escalations.length : 0) + (o.alert_resolved_at ? 1 : 0);

function putAlert(a, change) {
  if (change === "cancelled") { S.alerts.delete(a.id); return false; }
  const old = S.alerts.get(a.id);
  if (old && ALERT_RANK[a.state] < ALERT_RANK[old.state]) return false;
  S.alerts.set(a.id, a);
  return !old || old.state !== a.state;
}

function putOrder(o) {
  const old = S.orders.get(o.id);
  if (old) {
    const r = ORDER_RANK[o.status] - ORDER_RANK[old.status];
    if (r < 0 || (r === 0 && progress(o) < progress(old))) return;
  }
  S.orders.set(o.id, o);
}

const deviceKey = (site, device) => site + "/" + device;

async function loadLists() {
  const role = S.me.role;
  const jobs = [];
  if (role === "admin" || role === "engineer") {
    jobs.push(api("/api/v1/alerts?limit=500").then((j) => { for (const a of j.alerts) putAlert(a); }));
    jobs.push(api("/api/v1/health?top=5").then((j) => { S.inspect = j.inspect_first || []; }));
  }
  jobs.push(api("/api/v1/work-orders?limit=300").then((j) => { for (const o of j.work_orders) putOrder(o); }));
  if (role !== "contractor") jobs.push(loadDevices());
  const done = await Promise.allSettled(jobs);
  const failed = done.find((d) => d.status === "rejected" && d.reason.status !== 401 && d.reason.status !== 0);
  if (failed) toast(failed.reason.message, true);
  render();
}

async function loadDevices() {
  const j = await api("/api/v1/devices");
  const seen = new Set();
  for (const d of j.devices) {
    const k = deviceKey(d.site, d.device);
    seen.add(k);
    S.devices.set(k, d);
  }
  for (const k of [...S.devices.keys()]) if (!seen.has(k)) S.devices.delete(k);
}

// ----------------------------------------------------------------- stream --
/** Reads Server-Sent Events from a fetch body; calls `on(name, data, id)` per event. */
async function readEvents(body, on, alive) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  let name = "";
  let data = [];
  let id = null;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    if (alive) alive();
    buf += value;
    let nl;
    while ((nl = buf.indexOf("\n")) >= 0) {
      const line = buf.slice(0, nl).replace(/\r$/, "");
      buf = buf.slice(nl + 1);
      if (line === "") {
        if (data.length || name) on(name || "message", data.join("\n"), id);
        name = ""; data = []; id = null;
      } else if (line[0] !== ":") {
        const c = line.indexOf(":");
        const field = c < 0 ? line : line.slice(0, c);
        let v = c < 0 ? "" : line.slice(c + 1);
        if (v[0] === " ") v = v.slice(1);
        if (field === "event") name = v;
        else if (field === "data") data.push(v);
        else if (field === "id") id = v;
      }
    }
  }
}

function setConn(state) {
  S.conn = state;
  const el = $("conn");
  el.className = "pill " + ({ live: "ok", connecting: "wait", reconnecting: "wait", offline: "off" }[state] || "off");
  el.textContent = t(state);
  el.dataset.state = state;
}

/** Keeps the event stream open for this sign-in: reconnects with backoff, resumes with Last-Event-ID. */
async function stream(gen) {
  let delay = 1000;
  while (gen === S.gen) {
    setConn(S.everLive ? "reconnecting" : "connecting");
    const ctl = new AbortController();
    S.abort = ctl;
    // A half-open connection sends nothing: the gateway's keep-alive comes
    // every 15 s, so 45 s of silence means the stream is gone.
    let quiet;
    const alive = () => { clearTimeout(quiet); quiet = setTimeout(() => ctl.abort(), 45_000); };
    try {
      const headers = { Authorization: "Bearer " + S.token, Accept: "text/event-stream" };
      if (S.lastId) headers["Last-Event-ID"] = S.lastId;
      const r = await fetch("/api/v1/events", { headers, signal: ctl.signal, credentials: "omit", cache: "no-store" });
      if (gen !== S.gen) return;
      if (r.status === 401) { refused(t("unknownToken")); return; }
      if (r.status === 429) {
        const wait = Math.max(1, parseInt(r.headers.get("Retry-After") || "60", 10) || 60);
        S.pausedUntil = Date.now() + wait * 1000;
        delay = wait * 1000;
        throw new Error("429");
      }
      if (!r.ok || !r.body) throw new Error("events: " + r.status);
      const resumed = S.everLive;
      S.everLive = true;
      setConn("live");
      delay = 1000;
      alive();
      // Without event ids, a reconnect cannot resume: whatever happened in
      // between is read again.
      if (resumed && !S.lastId) loadLists();
      await readEvents(r.body, (name, data, id) => { if (gen === S.gen) onEvent(name, data, id); }, alive);
    } catch (e) {
      if (gen !== S.gen) return;
    } finally {
      clearTimeout(quiet);
    }
    if (gen !== S.gen) return;
    setConn(navigator.onLine === false ? "offline" : "reconnecting");
    await pause(delay + Math.random() * 500);
    delay = Math.min(delay * 2, 30_000);
  }
}

/** A wait between tries that the network coming back cuts short. */
let wake = null;
function pause(ms) {
  return new Promise((res) => { const t = setTimeout(res, ms); wake = () => { clearTimeout(t); res(); }; });
}
window.addEventListener("online", () => { if (wake) wake(); });
window.addEventListener("offline", () => { if (S.token) setConn("offline"); });

function onEvent(name, data, id) {
  if (id) S.lastId = id;
  let j = null;
  try { j = data ? JSON.parse(data) : null; } catch (e) { return; }
  switch (name) {
    case "alert": {
      const a = j && (j.alert || j);
      if (!a || a.id === undefined) return;
      const change = j.change;
      const wasFiring = S.alerts.get(a.id);
      const moved = putAlert(a, change);
      if (moved && a.state === "firing" && a.severity === "critical" && (!wasFiring || wasFiring.state === "pending")) beep();
      if (a.code === "offline") offlineFromAlert(a, change);
      break;
    }
    case "work_order": {
      const o = j && (j.order || j);
      if (o && o.id !== undefined) putOrder(o);
      break;
    }
    case "device": {
      // A status change (online, stale, offline): the device's row moves
      // at once; a device not yet listed is read with the next list.
      if (!j || !j.device) return;
      const k = deviceKey(j.site, j.device);
      const d = S.devices.get(k);
      if (d) { d.status = j.status; d.last_seen_ms = j.last_seen_ms; }
      else S.devices.set(k, { site: j.site, class: j.class, device: j.device, status: j.status, last_seen_ms: j.last_seen_ms });
      break;
    }
    case "record":
      // A command's outcome moves its row on the device page at once.
      if (j && typeof j.subject === "string" && j.subject.startsWith("command:")) commandRecord(j);
      // Only a note on the records view: a search is a question asked at a
      // time, and a busy gateway records several times a second.
      S.newRecords += 1;
      newRecordsNote();
      return;
    case "reset":
    case "lagged":
      // Events were missed: read the lists again.
      S.alerts.clear();
      loadLists();
      return;
    default:
      return;
  }
  prune();
  renderSoon();
}

/** A tab open for weeks keeps what is open and the latest of what is closed. */
function prune() {
  const drop = (map, closed, key) => {
    if (map.size <= 2000) return;
    const old = [...map.values()].filter(closed).sort((a, b) => key(a) - key(b));
    for (const x of old.slice(0, map.size - 1500)) map.delete(x.id);
  };
  drop(S.alerts, (a) => a.state === "resolved", (a) => a.resolved_at || 0);
  drop(S.orders, (o) => !dueOf(o), (o) => o.closed_at || 0);
}

/** A device's `offline` alert says at once what the registry would say at the next read. */
function offlineFromAlert(a, change) {
  const d = S.devices.get(deviceKey(a.site, a.device));
  if (!d) return;
  if (a.state === "firing" || a.state === "acknowledged") d.status = "offline";
  else if (change === "resolved") d.status = "online";
}

// ------------------------------------------------------------------ sound --
// A beep made by WebAudio, no audio file. Browsers let a page play sound
// only after a gesture, so the context starts on the first click or key.
let audio = null;
function armAudio() {
  const C = window.AudioContext || window.webkitAudioContext;
  if (!audio && C) audio = new C();
  if (audio && audio.state === "suspended") audio.resume();
}
document.addEventListener("pointerdown", armAudio, true);
document.addEventListener("keydown", armAudio, true);

function beep() {
  if (S.muted || !audio || audio.state !== "running") return;
  S.beeps += 1;
  document.documentElement.dataset.beeps = String(S.beeps);
  const t0 = audio.currentTime;
  for (const [i, f] of [[0, 880], [1, 660], [2, 880]]) {
    const osc = audio.createOscillator();
    const g = audio.createGain();
    osc.type = "square";
    osc.frequency.value = f;
    const at = t0 + i * 0.22;
    g.gain.setValueAtTime(0.0001, at);
    g.gain.exponentialRampToValueAtTime(0.15, at + 0.02);
    g.gain.exponentialRampToValueAtTime(0.0001, at + 0.18);
    osc.connect(g).connect(audio.destination);
    osc.start(at);
    osc.stop(at + 0.2);
  }
}

// ------------------------------------------------------------- formatting --
const formats = new Map();
function fmtTime(ms, withYear) {
  if (!ms) return "";
  const key = S.lang + (withYear ? "y" : "");
  if (!formats.has(key)) {
    const o = { month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false };
    if (withYear) o.year = "numeric";
    formats.set(key, new Intl.DateTimeFormat(S.lang === "zh" ? "zh-CN" : "en-GB", o));
  }
  return formats.get(key).format(ms);
}

function span(ms) {
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 3600) return String(Math.floor(s / 60)).padStart(2, "0") + ":" + String(s % 60).padStart(2, "0");
  if (s < 86400) return Math.floor(s / 3600) + ":" + String(Math.floor((s % 3600) / 60)).padStart(2, "0") + ":" + String(s % 60).padStart(2, "0");
  return Math.floor(s / 86400) + t("day") + " " + Math.floor((s % 86400) / 3600) + t("hour");
}

/** A KPI's length: `3 分钟`, `30 min`. */
// Orders of one month may have different deadlines (15 min for fire, 10 for
// chargers, 2 h for other faults): one figure only when they share it.
const within = (k) => (k.kpi_s == null ? t("ownDeadline") : minutes(k.kpi_s));
function minutes(s) {
  return s % 60 === 0 ? s / 60 + " " + t("min") + (S.lang === "zh" ? "钟" : "") : s + " " + t("sec");
}

function ago(ms) {
  if (!ms) return "";
  const s = Math.max(0, Math.round((now() - ms) / 1000));
  const v = s < 60 ? s + " " + t("sec") : s < 3600 ? Math.floor(s / 60) + " " + t("min") : s < 86400 ? Math.floor(s / 3600) + " " + t("hour") : Math.floor(s / 86400) + " " + t("day");
  return t("ago", { t: v });
}

const codeLabel = (x) => L("codes", x.code, x.label_zh);
const sevChip = (sev) => `<span class="sev ${esc(sev)}">${esc(L("severities", sev))}</span>`;
const siteName = (s) => L("sites", s);
const buildingName = (b) => (b ? L("buildings", b) : t("noBuilding"));
const devLink = (site, device, text) => `<a href="#/device/${enc(site)}/${enc(device)}">${esc(text ?? device)}</a>`;

// ------------------------------------------------------------------ views --
const VIEWS = {
  admin: ["board", "devices", "orders", "records", "report"],
  engineer: ["board", "devices", "orders", "records", "report"],
  contractor: ["orders"],
  auditor: ["records", "report", "orders"],
};

function route() {
  const h = location.hash.replace(/^#\/?/, "");
  const [name, ...rest] = h.split("/");
  const views = VIEWS[S.me.role] || [];
  if (name === "device" && rest.length >= 2 && S.me.role !== "contractor") return { name: "device", site: decodeURIComponent(rest[0]), device: decodeURIComponent(rest[1]) };
  if (views.includes(name)) return { name };
  return { name: views[0] || "none" };
}

let renderQueued = false;
let lastView = "";
function renderSoon() {
  if (renderQueued) return;
  renderQueued = true;
  requestAnimationFrame(() => { renderQueued = false; render(); });
}

/** Re-renders the current view, keeping the focused field, its text and caret. */
function render() {
  if (!S.me) return;
  const r = route();
  document.body.dataset.view = r.name;
  document.body.dataset.role = S.me.role;
  renderChrome(r);
  const active = document.activeElement;
  const keep = active && active.id && $("view").contains(active) ? { id: active.id, start: active.selectionStart, end: active.selectionEnd } : null;
  // What was typed but not yet sent stays when the same view is drawn again.
  const fields = new Map();
  if (lastView === r.name) for (const el of $("view").querySelectorAll("input[id], select[id]")) fields.set(el.id, el.value);
  lastView = r.name;
  const html = { board: viewBoard, devices: viewDevices, device: viewDevice, orders: viewOrders, records: viewRecords, report: viewReport }[r.name];
  $("view").innerHTML = html ? html(r) : `<p class="box">${esc(t("noRole"))}</p>`;
  for (const [id, v] of fields) { const el = $(id); if (el && el.value !== v) el.value = v; }
  if (r.name === "device") drawCharts();
  if (keep) {
    const el = $(keep.id);
    if (el) { el.focus(); try { el.setSelectionRange(keep.start, keep.end); } catch (e) { /* not a text field */ } }
  }
  tick();
}

function renderChrome(r) {
  const views = VIEWS[S.me.role] || [];
  $("nav").innerHTML = views
    .map((v) => `<a href="#/${v}" class="${r.name === v || (r.name === "device" && v === "devices") ? "on" : ""}">${esc(t(v === "orders" && S.me.role === "contractor" ? "myOrders" : v))}</a>`)
    .join("");
  $("who").textContent = [S.me.name, L("roles", S.me.role)].filter(Boolean).join(" · ");
  const m = $("mute");
  m.hidden = !(S.me.role === "engineer" || S.me.role === "admin");
  m.textContent = S.muted ? t("unmute") : t("mute");
  m.title = S.muted ? t("soundOff") : t("soundOn");
  m.setAttribute("aria-pressed", String(S.muted));
  $("signout").hidden = false;
  $("signout").textContent = t("signout");
  $("lang").textContent = S.lang === "zh" ? "EN" : "中文";
  setConn(S.conn);
}

// The engineer's board: open alerts by compound and building, worst first.
const SEV_ORDER = { critical: 0, major: 1, minor: 2, info: 3 };
function viewBoard() {
  const open = [...S.alerts.values()].filter((a) => a.state !== "resolved");
  const resolved = [...S.alerts.values()].filter((a) => a.state === "resolved").sort((a, b) => (b.resolved_at || 0) - (a.resolved_at || 0)).slice(0, 10);
  const counts = {};
  for (const a of open) counts[a.severity] = (counts[a.severity] || 0) + 1;
  let html = `<section class="summary"><h2>${esc(t("openAlerts"))}</h2><div class="counts">`;
  for (const sev of ["critical", "major", "minor", "info"]) html += `<span class="count ${sev}"><b>${counts[sev] || 0}</b> ${esc(L("severities", sev))}</span>`;
  html += `</div>${deviceSummary()}</section>${inspectFirst()}`;
  if (!open.length) html += `<p class="box muted" id="no-alerts">${esc(t("noAlerts"))}</p>`;
  const sites = new Map();
  for (const a of open) {
    if (!sites.has(a.site)) sites.set(a.site, new Map());
    const b = sites.get(a.site);
    const key = a.building || "";
    if (!b.has(key)) b.set(key, []);
    b.get(key).push(a);
  }
  for (const [site, buildings] of [...sites].sort()) {
    html += `<section class="site"><h2>${esc(siteName(site))}</h2><div class="buildings">`;
    for (const [b, list] of [...buildings].sort((x, y) => (x[0] || "\uffff").localeCompare(y[0] || "\uffff"))) {
      list.sort((x, y) => SEV_ORDER[x.severity] - SEV_ORDER[y.severity] || (y.fired_at || y.since) - (x.fired_at || x.since));
      html += `<div class="building"><h3>${esc(buildingName(b))}</h3><ul class="alerts">${list.map(alertItem).join("")}</ul></div>`;
    }
    html += `</div></section>`;
  }
  if (resolved.length) {
    html += `<section><h2>${esc(t("recentResolved"))}</h2><ul class="alerts resolved">${resolved.map(alertItem).join("")}</ul></section>`;
  }
  return html;
}

// 本周优先检查: the least healthy devices from their history, with the
// heaviest reason of each (docs/judgement.md).
function inspectFirst() {
  if (!S.inspect.length) return "";
  const items = S.inspect.map((d) => {
    const r = (d.reasons || [])[0];
    const why = r ? (r.label || r.metric || r.fault) : "";
    return `<li data-device="${esc(d.device)}">${devLink(d.site, d.device)} <span class="muted">${esc(siteName(d.site))}</span> · ${esc(t("score"))} <b>${esc(d.score)}</b>${why ? ` · <span class="muted">${esc(why)}</span>` : ""}</li>`;
  }).join("");
  return `<section class="box inspect" id="inspect-first"><h2>${esc(t("inspectFirst"))}</h2><ol>${items}</ol></section>`;
}

function deviceSummary() {
  if (!S.devices.size) return "";
  const on = [...S.devices.values()].filter((d) => d.status === "online").length;
  return `<a class="online-sum" href="#/devices">${esc(t("devices"))} ${esc(t("online"))} <b>${on}</b> / ${S.devices.size}</a>`;
}

function alertItem(a) {
  const when = a.fired_at || a.since;
  const acts = a.state === "firing" && (S.me.role === "engineer" || S.me.role === "admin")
    ? `<button type="button" class="ack" data-act="ack" data-id="${esc(a.id)}">${esc(t("ack"))}</button>`
    : a.acked_by ? `<span class="muted">${esc(t("ackedBy", { by: a.acked_by }))}</span>` : "";
  return `<li class="alert sev-${esc(a.severity)} st-${esc(a.state)}" data-alert="${esc(a.id)}" data-code="${esc(a.code)}" data-device="${esc(a.device)}">
    <div class="what">${sevChip(a.severity)} <b class="label">${esc(codeLabel(a))}</b> <span class="state st-${esc(a.state)}">${esc(L("alert_states", a.state))}</span></div>
    <div class="where">${esc(L("classes", a.class))} · ${devLink(a.site, a.device)}${a.port ? " · " + esc(t("port")) + " " + esc(a.port) : ""}${a.inhibited_by ? ` <span class="muted">(${esc(a.inhibited_by)})</span>` : ""}</div>
    <div class="when"><span title="${esc(fmtTime(when, true))}" data-ago="${esc(a.state === "resolved" ? a.resolved_at : when)}">${esc(ago(a.state === "resolved" ? a.resolved_at : when))}</span> ${acts}</div>
  </li>`;
}

// Devices with their online state, by compound.
function viewDevices() {
  const buildings = buildingsOfDevices();
  const bySite = new Map();
  for (const d of S.devices.values()) {
    if (!bySite.has(d.site)) bySite.set(d.site, []);
    bySite.get(d.site).push(d);
  }
  if (!bySite.size) return `<p class="box muted">—</p>`;
  let html = "";
  for (const [site, list] of [...bySite].sort()) {
    list.sort((a, b) => a.class.localeCompare(b.class) || a.device.localeCompare(b.device));
    html += `<section class="site"><h2>${esc(siteName(site))}</h2><div class="scroll"><table class="devices"><thead><tr>
      <th>${esc(t("device"))}</th><th>${esc(t("klass"))}</th><th>${esc(t("building"))}</th><th>${esc(t("status"))}</th><th>${esc(t("lastSeen"))}</th><th>${esc(t("fw"))}</th><th>${esc(t("lost"))}</th></tr></thead><tbody>`;
    for (const d of list) {
      const b = d.building || buildings.get(deviceKey(d.site, d.device));
      html += `<tr data-device="${esc(d.device)}"><td>${devLink(d.site, d.device)}</td><td>${esc(L("classes", d.class))}</td><td>${esc(b ? buildingName(b) : "")}</td>
        <td><span class="dev ${esc(d.status)}">${esc(L("device_status", d.status))}</span></td><td data-ago="${esc(d.last_seen_ms)}">${esc(ago(d.last_seen_ms))}</td><td>${esc(d.fw || "")}</td><td>${esc(d.lost)}</td></tr>`;
    }
    html += `</tbody></table></div></section>`;
  }
  return html;
}

/** Buildings known from alerts and orders, for a registry that does not say. */
function buildingsOfDevices() {
  const m = new Map();
  for (const x of [...S.alerts.values(), ...S.orders.values()]) if (x.building) m.set(deviceKey(x.site, x.device), x.building);
  return m;
}

// The metrics charted per class (which to show is the console's choice;
// names and units come from the labels table). Ports: charging bays.
const CHARTS = {
  elevator: [["floor"], ["speed_mps"], ["load_pct"], ["run_count"]],
  firepump: [["network_pressure_mpa"], ["outlet_pressure_mpa"], ["tank_level_m"], ["pump_running"]],
  charger: [["ambient_temp_c"], ["leakage_ma"], ["temp_c", true], ["current_a", true]],
};
const STEPPED = new Set(["floor", "door_closed", "door_zone", "running", "occupied", "pump_running", "pump_fault", "auto_mode", "smoke", "state", "direction", "service_mode"]);

function viewDevice(r) {
  const d = S.devices.get(deviceKey(r.site, r.device)) || { site: r.site, device: r.device, class: guessClass(r), status: "" };
  if (!S.device || S.device.key !== deviceKey(r.site, r.device)) openDevice(r, d);
  const p = S.device;
  // Opened from a link before the registry was read: its class is known now.
  if (!p.class && d.class) { p.class = d.class; loadSeries(); }
  const buildings = buildingsOfDevices();
  const b = d.building || buildings.get(p.key);
  let html = `<section class="device-head"><a href="#/devices" class="back">← ${esc(t("back"))}</a>
    <h2>${esc(r.device)} <span class="muted">${esc(L("classes", d.class))}</span></h2>
    <p class="facts"><span><i>${esc(t("site"))}</i> ${esc(siteName(r.site))}</span>${b ? `<span><i>${esc(t("building"))}</i> ${esc(buildingName(b))}</span>` : ""}
    <span><i>${esc(t("status"))}</i> <b class="dev ${esc(d.status)}">${esc(L("device_status", d.status))}</b></span>
    <span><i>${esc(t("lastSeen"))}</i> <span data-ago="${esc(d.last_seen_ms)}">${esc(ago(d.last_seen_ms))}</span></span>${d.fw ? `<span><i>${esc(t("fw"))}</i> ${esc(d.fw)}</span>` : ""}</p></section>`;
  html += `<section><div class="bar"><h2>${esc(t("charts"))}</h2><span class="seg" role="group" aria-label="${esc(t("range"))}">`;
  for (const [k, ms] of [["h1", 3600_000], ["h6", 6 * 3600_000], ["h24", 86400_000], ["d7", 7 * 86400_000]]) {
    html += `<button type="button" data-act="range" data-ms="${ms}" class="${S.range === ms ? "on" : ""}">${esc(t(k))}</button>`;
  }
  html += `</span>`;
  if (d.class === "charger") html += `<label class="port">${esc(t("port"))} <input id="port" type="number" min="1" max="32" value="${esc(S.port)}"></label>`;
  html += `<button type="button" data-act="reload-device">${esc(t("refresh"))}</button></div><div class="charts">`;
  for (const [metric, perPort] of CHARTS[d.class] || []) {
    const info = metricInfo(metric, perPort);
    const title = L(perPort ? "port_metrics" : "metrics", metric) + (perPort ? ` · ${t("port")} ${S.port}` : "");
    html += `<figure class="chart-box" data-metric="${esc(metric)}"><figcaption>${esc(title)}${info.unit ? ` <span class="muted">(${esc(info.unit)})</span>` : ""}</figcaption><div class="plot" id="plot-${esc(metric)}"><div class="spinner"></div></div></figure>`;
  }
  html += `</div></section>`;
  if ((S.me.role === "engineer" || S.me.role === "admin") && (d.class === "charger" || d.class === "firepump")) html += commandsSection(d);
  const alerts = mergeHistory(p.alerts, [...S.alerts.values()].filter((a) => a.site === r.site && a.device === r.device));
  html += `<section class="device-alerts"><h2>${esc(t("alertHistory"))}</h2>${p.alerts ? (alerts.length ? `<ul class="alerts">${alerts.map(alertItem).join("")}</ul>` : `<p class="muted">—</p>`) : `<div class="spinner"></div>`}</section>`;
  const orders = mergeHistory(p.orders, [...S.orders.values()].filter((o) => o.site === r.site && o.device === r.device));
  html += `<section><h2>${esc(t("orderHistory"))}</h2>${p.orders ? (orders.length ? `<div class="cards">${orders.map(orderCard).join("")}</div>` : `<p class="muted">—</p>`) : `<div class="spinner"></div>`}</section>`;
  return html;
}

/**
 * Remote commands (docs/integrations.md): a bay's ports cut off, a pump's
 * self-test started. The gateway signs and sends them; each row shows where
 * the command stands, moved by its records on the event stream.
 */
function commandsSection(d) {
  let html = `<section class="commands"><div class="bar"><h2>${esc(t("commands"))}</h2>`;
  if (d.class === "charger") {
    html += `<label class="port">${esc(t("port"))} <input id="cmd-port" type="number" min="1" max="32" placeholder="${esc(t("allPorts"))}" value="${esc(S.cmdPort || "")}"></label>
      <button type="button" class="primary" data-act="command" data-op="cut_off">${esc(t("cutOff"))}</button>`;
  } else {
    html += `<button type="button" class="primary" data-act="command" data-op="self_test">${esc(t("selfTest"))}</button>`;
  }
  html += `</div>`;
  const list = (S.device && S.device.commands) || [];
  if (list.length) html += `<ul class="cmds">${list.map(commandItem).join("")}</ul>`;
  return html + `</section>`;
}

function commandItem(c) {
  const port = c.args && c.args.port ? ` · ${t("port")} ${c.args.port}` : c.op === "cut_off" ? ` · ${t("allPorts")}` : "";
  return `<li class="cmd st-${esc(c.status)}" data-cmd="${esc(c.id)}"><span>${esc(L("command_ops", c.op) + port)}</span>
    <b class="cmd-status">${esc(L("command_statuses", c.status))}</b>${c.error ? ` <q>${esc(c.error)}</q>` : ""}
    <span class="muted">${esc(fmtTime(c.sent_at))}${c.by ? " · " + esc(t("sentBy", { by: c.by })) : ""}</span></li>`;
}

async function command(op, button) {
  const p = S.device;
  if (!p) return;
  const args = {};
  const port = parseInt(($("cmd-port") || {}).value, 10);
  if (op === "cut_off" && port >= 1) args.port = port;
  button.disabled = true;
  try {
    const r = await api(`/api/v1/devices/${enc(p.site)}/${enc(p.device)}/commands`, { method: "POST", body: { op, args } });
    p.commands = [{ id: r.id, op, args, status: r.status, sent_at: now(), by: S.me.name }, ...(p.commands || [])];
    toast(t("done") + ": " + L("command_ops", op));
    // An outcome recorded before the row existed is read now; one the stream
    // missed, once it must be there (acked, refused, or expired at 30 s).
    refreshCommand(p, r.id);
    setTimeout(() => refreshCommand(p, r.id), 31_000);
  } catch (e) { toast(e.message, true); }
  button.disabled = false;
  render();
}

async function refreshCommand(p, id) {
  if (S.device !== p) return;
  try {
    const c = await api(`/api/v1/commands/${enc(id)}`);
    p.commands = (p.commands || []).map((x) => (x.id === id ? c : x));
    renderSoon();
  } catch (e) { /* the row keeps what it showed */ }
}

/** A command's record from the stream: its row on the open device page follows. */
function commandRecord(r) {
  const p = S.device;
  if (!p || !p.commands) return;
  let b = null;
  try { b = JSON.parse(r.body); } catch (e) { return; }
  const id = r.subject.slice("command:".length);
  if (!b || !b.status || !p.commands.some((x) => x.id === id)) return;
  p.commands = p.commands.map((x) => (x.id === id ? { ...x, status: b.status, error: b.error || null } : x));
  renderSoon();
}

function guessClass(r) {
  for (const x of [...S.alerts.values(), ...S.orders.values()]) if (x.site === r.site && x.device === r.device) return x.class;
  return "";
}

/** The page's history with what the stream brought since, newest first. */
function mergeHistory(read, live) {
  const m = new Map();
  for (const x of read || []) m.set(x.id, x);
  for (const x of live) m.set(x.id, x);
  return [...m.values()].sort((a, b) => b.id - a.id);
}

function openDevice(r, d) {
  const key = deviceKey(r.site, r.device);
  S.device = { key, site: r.site, device: r.device, class: d.class, series: new Map(), alerts: null, orders: null };
  const q = `site=${enc(r.site)}&device=${enc(r.device)}`;
  const p = S.device;
  api(`/api/v1/alerts?${q}&limit=50`).then((j) => { p.alerts = j.alerts; }, (e) => { p.alerts = []; toast(e.message, true); }).then(() => { if (S.device === p) renderSoon(); });
  api(`/api/v1/work-orders?${q}&limit=50`).then((j) => { p.orders = j.work_orders; }, (e) => { p.orders = []; toast(e.message, true); }).then(() => { if (S.device === p) renderSoon(); });
  loadSeries();
}

function loadSeries() {
  const p = S.device;
  if (!p) return;
  const to = now();
  const from = to - S.range;
  p.from = from;
  p.to = to;
  p.series = new Map();
  for (const [metric, perPort] of CHARTS[p.class] || []) {
    const port = perPort ? `&port=${enc(S.port)}` : "";
    api(`/api/v1/series?site=${enc(p.site)}&device=${enc(p.device)}&metric=${enc(metric)}${port}&from=${from}&to=${to}`)
      .then((j) => j.points, () => [])
      .then((pts) => { if (S.device === p) { p.series.set(metric, pts); drawChart(metric); } });
  }
}

/** A metric's row of the labels table (`unit` and names): device metrics, or a bay's per-port ones. */
function metricInfo(metric, perPort) {
  const g = S.labels[perPort ? "port_metrics" : "metrics"];
  return (g && g[metric]) || {};
}

const geometries = new Map();
function drawCharts() {
  if (!S.device) return;
  for (const m of S.device.series.keys()) drawChart(m);
}

function drawChart(metric) {
  const p = S.device;
  const el = $("plot-" + metric);
  if (!el || !p.series.has(metric)) return;
  const perPort = (CHARTS[p.class] || []).some(([m, pp]) => m === metric && pp);
  const info = metricInfo(metric, perPort);
  const pts = p.series.get(metric).map((x) => ({ ts: x.ts, value: x.value }));
  const c = chart(pts, p.from, p.to, { width: el.clientWidth, title: L(perPort ? "port_metrics" : "metrics", metric), unit: info.unit || "", step: STEPPED.has(metric), empty: t("noData") });
  el.innerHTML = c.svg;
  el.dataset.points = String(pts.length);
  geometries.set(metric, c.geometry);
}

// Charts are drawn to their box's width: again when it changes.
let resizing;
window.addEventListener("resize", () => { clearTimeout(resizing); resizing = setTimeout(drawCharts, 150); });

// The crosshair: the nearest point's time and value under the pointer.
document.addEventListener("pointermove", (ev) => {
  const svg = ev.target.closest && ev.target.closest("svg.chart");
  if (!svg) return;
  const box = svg.closest(".chart-box");
  const g = geometries.get(box && box.dataset.metric);
  const cross = svg.querySelector(".cross");
  if (!g || !cross) return;
  const rect = svg.getBoundingClientRect();
  const n = nearest(g, (ev.clientX - rect.left) / rect.width);
  if (!n) return;
  cross.setAttribute("visibility", "visible");
  const [line, dot, text] = cross.children;
  line.setAttribute("x1", n.x); line.setAttribute("x2", n.x);
  dot.setAttribute("cx", n.x); dot.setAttribute("cy", n.y);
  text.setAttribute("x", Math.max(4, Math.min(n.x + 6, g.W - 150)));
  text.textContent = fmtTime(n.point.ts) + "  " + fmtValue(n.point.value);
});

// Work orders: the contractor's on a phone, everybody else's as cards.
const STEP_ORDER = ["respond", "arrive", "complete", "false-alarm"];
function nextSteps(o) {
  if (o.status === "completed" || o.status === "false_alarm") return [];
  const preventive = o.kind === "preventive";
  if (o.status === "dispatched") return preventive ? ["arrive"] : ["respond", "false-alarm"];
  if (o.status === "responded") return preventive ? ["arrive"] : ["arrive", "false-alarm"];
  return preventive ? ["complete"] : ["complete", "false-alarm"];
}

/** The deadline the order is working towards now. */
function dueOf(o) {
  if (o.status === "completed" || o.status === "false_alarm") return null;
  const d = o.deadlines || {};
  if (o.status === "dispatched" && d.respond) return { step: "Respond", at: d.respond };
  if ((o.status === "dispatched" || o.status === "responded") && d.arrive) return { step: "Arrive", at: d.arrive };
  return { step: "Complete", at: d.complete };
}

function mayStep(o) {
  const role = S.me.role;
  if (role === "engineer" || role === "admin") return true;
  if (role !== "contractor") return false;
  return !S.me.contractor || !o.contractor || o.contractor === S.me.contractor;
}

function orderCard(o) {
  const due = dueOf(o);
  const closed = !due;
  const overdue = due && due.at < now();
  const steps = mayStep(o) ? nextSteps(o) : [];
  const label = { respond: "respond", arrive: "arrive", complete: "complete", "false-alarm": "falseAlarm" };
  let html = `<article class="order sev-${esc(o.severity)}${overdue ? " late" : ""}${closed ? " closed" : ""}" data-order="${esc(o.id)}" data-status="${esc(o.status)}" data-code="${esc(o.code)}" data-device="${esc(o.device)}">
    <header><b class="label">${esc(codeLabel(o))}</b> ${sevChip(o.severity)} <span class="st">${esc(L("order_statuses", o.status))}</span><span class="id">#${esc(o.id)}</span></header>
    <div class="where">${esc(siteName(o.site))}${o.building ? " · " + esc(buildingName(o.building)) : ""} · ${esc(L("classes", o.class))} ${S.me.role === "contractor" ? esc(o.device) : devLink(o.site, o.device)}${o.port ? " · " + esc(t("port")) + " " + esc(o.port) : ""}</div>`;
  if (due) {
    html += `<div class="due-line"><span class="due-name">${esc(t("due" + due.step))}</span> <span class="due${overdue ? " late" : ""}" data-due="${esc(due.at)}">${esc(dueText(due.at))}</span><span class="muted"> · ${esc(fmtTime(due.at))}</span></div>`;
    if (o.deadlines && o.deadlines.bureau && !o.bureau_flagged) html += `<div class="due-line small"><span class="due-name">${esc(t("dueBureau"))}</span> <span class="due" data-due="${esc(o.deadlines.bureau)}">${esc(dueText(o.deadlines.bureau))}</span></div>`;
  }
  const flags = [];
  if (o.kind === "preventive") flags.push(L("order_kinds", o.kind));
  if (o.bureau_flagged) flags.push(t("flagged"));
  if (o.escalations && o.escalations.length) flags.push(t("escalated") + " ×" + o.escalations.length);
  if (S.me.role === "contractor" && S.me.contractor && o.contractor && o.contractor !== S.me.contractor) flags.push(t("redispatched", { c: L("contractors", o.contractor) }));
  else if (S.me.role !== "contractor" && o.contractor) flags.push(t("contractor") + ": " + L("contractors", o.contractor));
  if (flags.length) html += `<div class="flags">${flags.map((f) => `<span class="flag">${esc(f)}</span>`).join("")}</div>`;
  html += `<ol class="steps"><li><span>${esc(t("createdAt"))}</span> ${esc(fmtTime(o.created_at))}</li>`;
  for (const s of o.steps || []) html += `<li><span>${esc(L("order_statuses", s.status))}</span> ${esc(fmtTime(s.at))} · ${esc(s.by)}${s.note ? ` <q>${esc(s.note)}</q>` : ""}</li>`;
  html += `</ol>`;
  if (steps.length) {
    html += `<div class="act"><textarea id="note-${esc(o.id)}" data-note="${esc(o.id)}" rows="2" maxlength="2000" placeholder="${esc(t("note"))}">${esc(S.drafts.get(o.id) || "")}</textarea><div class="buttons">`;
    for (const s of steps.sort((a, b) => STEP_ORDER.indexOf(a) - STEP_ORDER.indexOf(b))) {
      html += `<button type="button" class="step ${s === "false-alarm" ? "minor-btn" : "primary"}" data-act="step" data-step="${s}" data-id="${esc(o.id)}">${esc(t(label[s]))}</button>`;
    }
    html += `</div></div>`;
  }
  return html + `</article>`;
}

function dueText(at) {
  const left = at - now();
  return left >= 0 ? t("left", { t: span(left) }) : t("overdue", { t: span(-left) });
}

function viewOrders() {
  const all = [...S.orders.values()];
  const open = all.filter((o) => dueOf(o)).sort((a, b) => dueOf(a).at - dueOf(b).at);
  const closed = all.filter((o) => !dueOf(o)).sort((a, b) => (b.closed_at || b.id) - (a.closed_at || a.id)).slice(0, 20);
  let html = `<section><h2>${esc(t("open"))} <span class="muted">${open.length}</span></h2>`;
  html += open.length ? `<div class="cards">${open.map(orderCard).join("")}</div>` : `<p class="box muted">${esc(t("noOrders"))}</p>`;
  html += `</section>`;
  if (closed.length) html += `<section><h2>${esc(t("closed"))}</h2><div class="cards">${closed.map(orderCard).join("")}</div></section>`;
  return html;
}

// The auditor's records: search, chain, export.
const KINDS = ["config_initial", "config_changed", "alert_fired", "alert_acknowledged", "alert_resolved", "alert_updated", "notification",
  "work_order_dispatched", "work_order_joined", "work_order_responded", "work_order_arrived", "work_order_completed", "work_order_false_alarm",
  "work_order_alert_resolved", "deadline_missed", "bureau_flagged", "duty_missed", "duty_done", "self_test", "maintenance_started", "maintenance_ended",
  "notification_sent", "notification_dead_letter", "replayed_event", "rejected_input"];

function sitesKnown() {
  const s = new Set(S.me.sites || []);
  for (const d of S.devices.values()) s.add(d.site);
  return [...s].sort();
}

function localInput(ms) {
  if (!ms) return "";
  const d = new Date(ms - new Date(ms).getTimezoneOffset() * 60_000);
  return d.toISOString().slice(0, 16);
}

function viewRecords() {
  const q = S.records.query || {};
  const kinds = S.labels.record_kinds ? Object.keys(S.labels.record_kinds) : KINDS;
  let html = `<section class="chain-box"><h2>${esc(t("chain"))}</h2><div class="chain-line">${chainStatus()}
    <button type="button" data-act="verify" ${S.verifying ? "disabled" : ""}>${esc(t("verify"))}</button></div></section>`;
  html += `<section><form id="rsearch" class="search">
    <label>${esc(t("site"))}<select id="r-site" name="site"><option value="">${esc(t("all"))}</option>${sitesKnown().map((s) => `<option value="${esc(s)}" ${q.site === s ? "selected" : ""}>${esc(siteName(s))}</option>`).join("")}</select></label>
    <label>${esc(t("device"))}<input id="r-device" name="device" list="r-devices" value="${esc(q.device || "")}" autocomplete="off"><datalist id="r-devices">${[...S.devices.values()].map((d) => `<option value="${esc(d.device)}">`).join("")}</datalist></label>
    <label>${esc(t("kind"))}<select id="r-kind" name="kind"><option value="">${esc(t("all"))}</option>${kinds.map((k) => `<option value="${esc(k)}" ${q.kind === k ? "selected" : ""}>${esc(L("record_kinds", k))}</option>`).join("")}</select></label>
    <label>${esc(t("from"))}<input id="r-from" name="from" type="datetime-local" value="${esc(localInput(q.from))}"></label>
    <label>${esc(t("to"))}<input id="r-to" name="to" type="datetime-local" value="${esc(localInput(q.to))}"></label>
    <div class="buttons"><button type="submit" class="primary">${esc(t("search"))}</button>
    <button type="button" data-act="export" data-format="csv">${esc(t("exportCsv"))}</button>
    <button type="button" data-act="export" data-format="json">${esc(t("exportJson"))}</button></div></form>`;
  html += `<p class="new-records" id="new-records" ${S.newRecords && S.records.query ? "" : "hidden"}><span>${esc(t("newRecords", { n: S.newRecords }))}</span> <button type="button" data-act="search-again">${esc(t("show"))}</button></p>`;
  const list = S.records.list;
  if (S.records.query) {
    html += list.length ? `<div class="scroll"><table class="records"><thead><tr><th>${esc(t("seq"))}</th><th>${esc(t("time"))}</th><th>${esc(t("kind"))}</th><th>${esc(t("site"))}</th><th>${esc(t("device"))}</th><th>${esc(t("subject"))}</th><th>${esc(t("body"))}</th></tr></thead><tbody>${list.map(recordRow).join("")}</tbody></table></div>`
      : S.records.loading ? `<div class="spinner"></div>` : `<p class="box muted">${esc(t("noRecords"))}</p>`;
    if (S.records.next && list.length) html += `<button type="button" data-act="more-records">${esc(t("more"))}</button>`;
  }
  return html + `</section>`;
}

function newRecordsNote() {
  const el = $("new-records");
  if (!el || !S.records.query) return;
  el.hidden = false;
  el.firstElementChild.textContent = t("newRecords", { n: S.newRecords });
}

/** A record's kind, and the code its body names (`告警触发 · 困人`), as the gateway's label_zh does. */
function recordLabel(r) {
  if (S.lang === "zh" && r.label_zh) return r.label_zh;
  let code = null;
  try { const b = JSON.parse(r.body); code = b.code || (b.alert && b.alert.code) || (b.order && b.order.code) || null; } catch (e) { /* not JSON */ }
  const kind = L("record_kinds", r.kind);
  return code && typeof code === "string" ? kind + " · " + L("codes", code) : kind;
}

function recordRow(r) {
  let body = r.body;
  try { body = JSON.stringify(JSON.parse(r.body), null, 1); } catch (e) { /* as stored */ }
  const brief = r.body.length > 80 ? r.body.slice(0, 80) + "…" : r.body;
  return `<tr data-seq="${esc(r.seq)}" data-kind="${esc(r.kind)}"><td>${esc(r.seq)}</td><td>${esc(fmtTime(r.at, true))}</td><td>${esc(recordLabel(r))}</td><td>${esc(r.site)}</td><td>${esc(r.device)}</td><td>${esc(r.subject)}</td>
    <td><details><summary>${esc(brief)}</summary><pre>${esc(body)}</pre></details></td></tr>`;
}

function chainStatus() {
  if (S.verifying) {
    const p = S.verifying;
    return `<span class="verifying">${esc(t("verifying"))} <progress id="chain-progress" ${p.total ? `max="${p.total}" value="${p.checked}"` : ""}></progress> ${p.total ? esc(p.checked + " / " + p.total) : ""}</span>`;
  }
  const v = S.chainResult;
  if (!v) return `<span class="muted" id="chain-status">${esc(t("notVerified"))}</span>`;
  if (v.error) return `<span class="bad" id="chain-status">${esc(v.error)}</span>`;
  return v.ok
    ? `<span class="good" id="chain-status">✔ ${esc(t("chainOk", { n: v.count, c: v.checkpoints }))}</span>`
    : `<span class="bad" id="chain-status">✘ ${esc(t("chainBad", { p: v.problem ? v.problem.message : "?" }))}</span>`;
}

function recordQuery() {
  const v = (id) => ($(id) ? $(id).value.trim() : "");
  const ms = (id) => { const x = v(id); return x ? new Date(x).getTime() : null; };
  return { site: v("r-site"), device: v("r-device"), kind: v("r-kind"), from: ms("r-from"), to: ms("r-to") };
}

function recordParams(q) {
  const p = new URLSearchParams();
  for (const k of ["site", "device", "kind", "from", "to"]) if (q[k]) p.set(k, q[k]);
  return p;
}

async function searchRecords(q, more) {
  const gen = S.gen;
  S.records.query = q;
  S.records.loading = true;
  if (!more) { S.records.list = []; S.records.next = null; S.newRecords = 0; }
  render();
  const p = recordParams(q);
  p.set("limit", "200");
  if (more && S.records.next) p.set("after", S.records.next);
  try {
    const j = await api("/api/v1/records?" + p);
    if (gen !== S.gen) return;
    S.records.list = more ? S.records.list.concat(j.records) : j.records;
    S.records.next = j.records.length === 200 ? j.next_after : null;
  } catch (e) { toast(e.message, true); }
  S.records.loading = false;
  render();
}

/** Verifies the chain: streamed progress where the gateway offers it, else one answer and a spinner. */
async function verify() {
  if (S.verifying) return;
  S.verifying = { checked: 0, total: 0 };
  render();
  try {
    const r = await api("/api/v1/records/verify", { accept: "text/event-stream, application/json;q=0.5", raw: true });
    if ((r.headers.get("Content-Type") || "").startsWith("text/event-stream")) {
      let result = null;
      await readEvents(r.body, (name, data) => {
        const j = JSON.parse(data || "null");
        if (name === "progress" && j) {
          S.verifying = { checked: j.checked, total: j.total };
          const bar = $("chain-progress");
          if (bar) { bar.max = j.total || 1; bar.value = j.checked; bar.nextSibling.textContent = ` ${j.checked} / ${j.total}`; }
        } else if (name === "result") result = j;
      });
      S.chainResult = result || { error: "no result" };
    } else {
      S.chainResult = await r.json();
    }
  } catch (e) {
    S.chainResult = { error: e.message };
  }
  S.verifying = null;
  render();
}

/** A download the browser saves: fetched with the token, handed over as a Blob. */
async function download(path, name) {
  try {
    const r = await api(path, { raw: true });
    const blob = await r.blob();
    const cd = r.headers.get("Content-Disposition") || "";
    const m = /filename="([^"]+)"/.exec(cd);
    const a = document.createElement("a");
    a.href = URL.createObjectURL(blob);
    a.download = m ? m[1] : name;
    document.body.appendChild(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 60_000);
  } catch (e) { toast(e.message, true); }
}

// The bureau's monthly report.
function thisMonth() {
  const d = new Date(now());
  return d.getFullYear() + "-" + String(d.getMonth() + 1).padStart(2, "0");
}

function viewReport() {
  const sites = sitesKnown();
  const rp = S.report || {};
  let html = `<section><form id="rform" class="search">
    <label>${esc(t("site"))}<select id="rp-site">${sites.map((s) => `<option value="${esc(s)}" ${rp.site === s ? "selected" : ""}>${esc(siteName(s))}</option>`).join("")}</select></label>
    <label>${esc(t("month"))}<input id="rp-month" type="month" value="${esc(rp.month || thisMonth())}"></label>
    <div class="buttons"><button type="submit" class="primary">${esc(t("makeReport"))}</button>
    <button type="button" data-act="report-csv">${esc(t("downloadCsv"))}</button></div></form></section>`;
  if (rp.loading) html += `<div class="spinner"></div>`;
  const r = rp.data;
  if (!r) return html;
  const pct = (x) => (x === null || x === undefined ? "—" : (x * 100).toFixed(1) + "%");
  const sec = (x) => (x === null || x === undefined ? "—" : span(x * 1000));
  const kpi = (name, k) => `<tr><th>${esc(name)}</th><td>${esc(k.done)} / ${esc(k.orders)}</td><td>${esc(k.within_kpi)}</td><td><b>${esc(pct(k.rate))}</b></td><td>${esc(sec(k.p50_s))}</td><td>${esc(sec(k.p90_s))}</td><td>${esc(sec(k.max_s))}</td></tr>`;
  html += `<section class="report" id="report"><h2>${esc(siteName(r.site))} · ${esc(r.month.month)}</h2>
    <div class="counts"><span class="count"><b>${esc(r.orders.corrective)}</b> ${esc(t("ordersTotal"))}</span><span class="count"><b>${esc(r.orders.completed)}</b> ${esc(t("completed"))}</span>
    <span class="count"><b>${esc(r.orders.false_alarms)}</b> ${esc(t("falseAlarms"))}</span><span class="count"><b>${esc(r.orders.open)}</b> ${esc(t("stillOpen"))}</span>
    <span class="count critical"><b>${esc(r.orders.bureau_flagged)}</b> ${esc(t("bureauFlagged"))}</span></div>
    <div class="scroll"><table><thead><tr><th></th><th>${esc(t("completed"))}</th><th>${esc(t("withinKpi"))}</th><th>${esc(t("rate"))}</th><th>P50</th><th>P90</th><th>max</th></tr></thead><tbody>
    ${kpi(t("kpiRespond", { s: within(r.response) }), r.response)}${kpi(t("kpiArrive", { s: within(r.arrival) }), r.arrival)}</tbody></table></div>
    <div class="two"><div><h3>${esc(t("faults"))}</h3><table><tbody>${r.faults.map((f) => `<tr><td>${esc(L("classes", f.class))}</td><td>${esc(L("codes", f.code))}</td><td>${esc(f.count)}</td></tr>`).join("") || `<tr><td class="muted">—</td></tr>`}</tbody></table></div>
    <div><h3>${esc(t("missed"))}</h3><table><tbody>${r.missed.map((m) => `<tr><td>${esc(L("deadlines", m.deadline))}</td><td>${esc(m.count)}</td></tr>`).join("") || `<tr><td class="muted">—</td></tr>`}</tbody></table></div></div>
    <h3>${esc(t("duties"))}</h3><div class="scroll"><table><thead><tr><th>${esc(t("klass"))}</th><th></th><th>${esc(t("due"))}</th><th>${esc(t("onTime"))}</th><th>${esc(t("late"))}</th><th>${esc(t("missed"))}</th><th>${esc(t("pending"))}</th><th>${esc(t("rate"))}</th></tr></thead><tbody>
    ${r.duties.map((d) => `<tr><td>${esc(L("classes", d.class))}</td><td>${esc(L("duties", d.duty))}</td><td>${esc(d.due)}</td><td>${esc(d.on_time)}</td><td>${esc(d.late)}</td><td>${esc(d.missed)}</td><td>${esc(d.pending)}</td><td>${esc(pct(d.rate))}</td></tr>`).join("") || `<tr><td class="muted" colspan="8">—</td></tr>`}</tbody></table></div></section>`;
  return html;
}

async function makeReport() {
  const site = $("rp-site") ? $("rp-site").value : "";
  const month = $("rp-month") ? $("rp-month").value : thisMonth();
  if (!site) return;
  S.report = { site, month, loading: true };
  render();
  try {
    const data = await api(`/api/v1/reports/monthly?site=${enc(site)}&month=${enc(month)}`);
    S.report = { site, month, data };
  } catch (e) { S.report = { site, month }; toast(e.message, true); }
  render();
}

// ---------------------------------------------------------------- actions --
async function ack(id, button) {
  button.disabled = true;
  try {
    const a = await api(`/api/v1/alerts/${enc(id)}/ack`, { method: "POST", body: {} });
    putAlert(a);
    toast(t("done"));
  } catch (e) { toast(e.message, true); button.disabled = false; return; }
  render();
}

async function step(id, which, button) {
  for (const b of button.parentElement.querySelectorAll("button")) b.disabled = true;
  const note = (S.drafts.get(Number(id)) || "").trim();
  try {
    const o = await api(`/api/v1/work-orders/${enc(id)}/${enc(which)}`, { method: "POST", body: note ? { note } : {} });
    S.drafts.delete(Number(id));
    putOrder(o);
    toast(t("done") + ": " + L("order_statuses", o.status));
  } catch (e) { toast(e.message, true); }
  render();
}

const ACTIONS = {
  ack: (b) => ack(b.dataset.id, b),
  command: (b) => command(b.dataset.op, b),
  step: (b) => step(b.dataset.id, b.dataset.step, b),
  range: (b) => { S.range = Number(b.dataset.ms); loadSeries(); render(); },
  "reload-device": () => loadDevices().catch(() => {}).then(() => { S.device = null; if (route().name === "device") render(); }),
  verify: () => verify(),
  export: (b) => {
    // What the form says now, searched or not.
    const p = recordParams(recordQuery());
    p.set("format", b.dataset.format);
    download("/api/v1/records/export?" + p, "records." + b.dataset.format);
  },
  "search-again": () => searchRecords(S.records.query || recordQuery()),
  "more-records": () => searchRecords(S.records.query, true),
  "report-csv": () => {
    const site = $("rp-site") ? $("rp-site").value : "";
    const month = $("rp-month") ? $("rp-month").value : thisMonth();
    if (site) download(`/api/v1/reports/monthly?site=${enc(site)}&month=${enc(month)}&format=csv`, `report-${site}-${month}.csv`);
  },
};

$("view").addEventListener("click", (ev) => {
  const b = ev.target.closest("[data-act]");
  if (b && !b.disabled && ACTIONS[b.dataset.act]) ACTIONS[b.dataset.act](b, ev);
});
$("view").addEventListener("input", (ev) => {
  // Kept across re-renders (the stream re-renders the page while one types).
  if (ev.target.id === "cmd-port") S.cmdPort = ev.target.value;
  const n = ev.target.dataset && ev.target.dataset.note;
  if (n) S.drafts.set(Number(n), ev.target.value);
});
$("view").addEventListener("change", (ev) => {
  if (ev.target.id === "port") { S.port = Math.max(1, parseInt(ev.target.value, 10) || 1); loadSeries(); render(); }
});
$("view").addEventListener("submit", (ev) => {
  ev.preventDefault();
  if (ev.target.id === "signin") signIn($("token").value.trim());
  else if (ev.target.id === "rsearch") searchRecords(recordQuery());
  else if (ev.target.id === "rform") makeReport();
});

$("lang").addEventListener("click", () => {
  S.lang = S.lang === "zh" ? "en" : "zh";
  local.set(LANG, S.lang);
  document.documentElement.lang = S.lang === "zh" ? "zh-CN" : "en";
  if (S.me) render(); else showSignIn();
});
$("mute").addEventListener("click", () => {
  S.muted = !S.muted;
  local.set(MUTE, S.muted ? "1" : "0");
  renderChrome(route());
});
$("signout").addEventListener("click", () => signOut());
window.addEventListener("hashchange", () => {
  if (location.hash.startsWith("#token=")) return takeLinkToken();
  if (S.me) { if (route().name !== "device") S.device = null; render(); }
});

let toastTimer;
function toast(text, bad) {
  const el = $("toast");
  el.textContent = text;
  el.className = bad ? "bad" : "good";
  el.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { el.hidden = true; }, bad ? 8000 : 2500);
}

// Every second: countdowns and "ago" texts, without touching the rest of the page.
function tick() {
  for (const el of document.querySelectorAll("[data-due]")) {
    const at = Number(el.dataset.due);
    el.textContent = dueText(at);
    const late = at < now();
    el.classList.toggle("late", late);
    const card = el.closest(".order");
    if (card && el.closest(".due-line:not(.small)")) card.classList.toggle("late", late);
  }
  for (const el of document.querySelectorAll("[data-ago]")) if (el.dataset.ago) el.textContent = ago(Number(el.dataset.ago));
}
setInterval(tick, 1000);

// Device statuses come as `device` events of the stream; the list's other
// figures (lost, duplicates, firmware) are read again every 5 minutes while
// devices are on screen, which costs the gateway an in-memory snapshot.
setInterval(() => {
  if (!S.me || S.me.role === "contractor" || document.hidden) return;
  const v = route().name;
  if (v === "devices" || v === "device") loadDevices().then(renderSoon, () => {});
}, 300_000);

// ---------------------------------------------------------------- sign-in --
function showSignIn(error) {
  document.body.dataset.view = "signin";
  $("nav").innerHTML = "";
  $("who").textContent = "";
  $("mute").hidden = true;
  $("signout").hidden = true;
  $("lang").textContent = S.lang === "zh" ? "EN" : "中文";
  setConn("offline");
  $("view").innerHTML = `<form id="signin" class="signin box">
    <h2>${esc(t("signin"))}</h2>
    <label for="token">${esc(t("token"))}</label>
    <input id="token" type="password" autocomplete="off" spellcheck="false" value="">
    <p class="muted small">${esc(t("tokenHint"))}</p>
    ${error ? `<p class="bad" id="signin-error">${esc(error)}</p>` : ""}
    <button type="submit" class="primary">${esc(t("signin"))}</button></form>`;
  $("token").focus();
}

function reset() {
  S.gen += 1;
  if (S.abort) S.abort.abort();
  S.me = null; S.lastId = null; S.everLive = false;
  S.alerts.clear(); S.orders.clear(); S.devices.clear(); S.drafts.clear();
  S.records = { list: [], next: null, query: null, loading: false };
  S.chainResult = null; S.verifying = null; S.report = null; S.device = null; S.newRecords = 0;
}

/** A refused token: stop everything (no retries that would lock this address out) and ask again. */
function refused(why) {
  session.set("");
  reset();
  S.token = "";
  showSignIn(why);
}

function signOut() {
  session.set("");
  reset();
  S.token = "";
  showSignIn();
}

async function signIn(token, retry = 1000) {
  if (!token) return;
  reset();
  const gen = S.gen;
  S.token = token;
  session.set(token);
  setConn("connecting");
  let me;
  try {
    me = await whoAmI();
  } catch (e) {
    if (gen !== S.gen || e.status === 401) return;
    if (e.status === undefined) {
      // The gateway is not reachable (restarting, no network): try again, less and less often.
      setConn(navigator.onLine === false ? "offline" : "reconnecting");
      $("view").innerHTML = `<p class="box muted">${esc(t("unreachable", { s: Math.round(retry / 1000) }))}</p>`;
      await pause(retry);
      if (gen === S.gen) signIn(token, Math.min(retry * 2, 30_000));
      return;
    }
    showSignIn(e.message);
    return;
  }
  if (gen !== S.gen) return;
  S.labels = await api("/api/v1/labels").catch(() => ({}));
  if (gen !== S.gen) return;
  S.me = me;
  render();
  stream(gen);
  await loadLists();
}

function takeLinkToken() {
  // A link with `#token=...` (what gateway-demo prints) signs in at once;
  // the fragment never reaches the server, and leaves the address bar and
  // this history entry at once.
  const token = decodeURIComponent(location.hash.slice(7)).trim();
  history.replaceState(null, "", location.pathname + location.search);
  signIn(token);
}

document.documentElement.lang = S.lang === "zh" ? "zh-CN" : "en";
if (location.hash.startsWith("#token=")) takeLinkToken();
else if (session.get()) signIn(session.get());
else showSignIn();
