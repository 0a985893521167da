// A time-series chart drawn as SVG by hand: a vendored chart library would
// be 50-200 KB in the binary for what is here ~150 lines (one line or step
// series, time and value axes, a crosshair). Returns markup for innerHTML:
// SVG presentation attributes, never a style attribute (the page's CSP).
"use strict";

const PAD = { l: 52, r: 14, t: 14, b: 30 };

const esc = (v) => String(v ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));

/** Round steps (1, 2, 2.5, 5 × 10^n), about `n` of them, from below `lo` to above `hi`. */
export function valueTicks(lo, hi, n = 5) {
  if (!(hi > lo)) { hi = lo + 1; lo -= 1; }
  const raw = (hi - lo) / n;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) || raw;
  const out = [];
  const top = Math.ceil(hi / step - 1e-9) * step;
  for (let v = Math.floor(lo / step + 1e-9) * step; v <= top + step * 1e-9; v += step) out.push(+v.toFixed(10));
  return out;
}

const MIN = 60_000;
const TIME_STEPS = [MIN, 2 * MIN, 5 * MIN, 10 * MIN, 15 * MIN, 30 * MIN, 60 * MIN, 120 * MIN, 180 * MIN, 360 * MIN, 720 * MIN, 1440 * MIN, 2880 * MIN];

/** Time ticks on round local times (whole minutes, hours, days). */
export function timeTicks(from, to, n = 6) {
  const step = TIME_STEPS.find((s) => (to - from) / s <= n) || TIME_STEPS[TIME_STEPS.length - 1];
  // Round in the viewer's zone: 08:00, not 00:00 UTC, on a Chinese screen.
  const off = new Date(from).getTimezoneOffset() * MIN;
  const out = [];
  for (let t = Math.ceil((from - off) / step) * step + off; t <= to; t += step) out.push(t);
  return { ticks: out, step };
}

const pad2 = (n) => String(n).padStart(2, "0");
function timeLabel(t, step) {
  const d = new Date(t);
  const hm = pad2(d.getHours()) + ":" + pad2(d.getMinutes());
  return step >= 1440 * MIN || (d.getHours() === 0 && d.getMinutes() === 0)
    ? pad2(d.getMonth() + 1) + "-" + pad2(d.getDate()) + (step < 1440 * MIN ? " " + hm : "")
    : hm;
}

/** A value as read out: whole numbers whole, others to three significant digits. */
function fmtValue(v) {
  if (Number.isInteger(v) || Math.abs(v) >= 100) return String(Math.round(v * 100) / 100);
  return String(+v.toPrecision(3));
}

/** A tick: as many decimals as the step between ticks needs, no more. */
function fmtTick(v, step) {
  const frac = String(+step.toPrecision(6)).split(".")[1];
  return v.toFixed(frac ? Math.min(frac.length, 6) : 0);
}

/** At most about two points per pixel column: each column's first, min, max and last, in time order. */
function thin(points, from, to, cols) {
  if (points.length <= cols * 2) return points;
  const out = [];
  let col = -1;
  let bucket = [];
  const flush = () => {
    if (!bucket.length) return;
    let lo = bucket[0];
    let hi = bucket[0];
    for (const p of bucket) { if (p.value < lo.value) lo = p; if (p.value > hi.value) hi = p; }
    const keep = [bucket[0], lo, hi, bucket[bucket.length - 1]].sort((a, b) => a.ts - b.ts);
    for (const p of keep) if (out[out.length - 1] !== p) out.push(p);
    bucket = [];
  };
  for (const p of points) {
    const c = Math.floor(((p.ts - from) / (to - from || 1)) * cols);
    if (c !== col) { flush(); col = c; }
    bucket.push(p);
  }
  flush();
  return out;
}

/**
 * An SVG chart of `points` ([{ts, value}], in time order) between `from` and
 * `to` (ms). `opts`: `width` (the box's CSS pixels: drawn 1:1, so the
 * text keeps its size on a phone), `title` and `unit` (named for screen
 * readers; the page shows them above the chart), `step` (draw steps: flags,
 * floors, enumerations), `empty` (the text shown without points).
 */
export function chart(points, from, to, opts = {}) {
  const W = Math.round(Math.min(Math.max(opts.width || 640, 280), 1200));
  const H = W < 480 ? 180 : 220;
  const iw = W - PAD.l - PAD.r;
  const ih = H - PAD.t - PAD.b;
  const pts = thin(points.filter((p) => Number.isFinite(p.value)), from, to, iw);
  let lo = Math.min(...pts.map((p) => p.value));
  let hi = Math.max(...pts.map((p) => p.value));
  if (!pts.length) { lo = 0; hi = 1; }
  if (lo === hi) { lo -= 1; hi += 1; }
  const vt = valueTicks(lo, hi);
  lo = Math.min(lo, vt[0]);
  hi = Math.max(hi, vt[vt.length - 1]);
  const x = (t) => PAD.l + ((t - from) / (to - from || 1)) * iw;
  const y = (v) => PAD.t + ih - ((v - lo) / (hi - lo || 1)) * ih;
  const { ticks, step } = timeTicks(from, to, W < 480 ? 4 : 6);
  let svg = `<svg class="chart" viewBox="0 0 ${W} ${H}" role="img" aria-label="${esc(opts.title)}${opts.unit ? " (" + esc(opts.unit) + ")" : ""}" preserveAspectRatio="xMidYMid meet">`;
  svg += `<rect x="${PAD.l}" y="${PAD.t}" width="${iw}" height="${ih}" fill="#fbfcfe" stroke="#d8dde6"/>`;
  for (const v of vt) {
    const yy = y(v).toFixed(1);
    svg += `<line x1="${PAD.l}" x2="${W - PAD.r}" y1="${yy}" y2="${yy}" stroke="#e6e9ef"/>`;
    svg += `<text x="${PAD.l - 6}" y="${yy}" text-anchor="end" dominant-baseline="middle" class="tick">${esc(fmtTick(v, vt[1] - vt[0] || 1))}</text>`;
  }
  for (const t of ticks) {
    const xx = x(t).toFixed(1);
    svg += `<line x1="${xx}" x2="${xx}" y1="${PAD.t}" y2="${PAD.t + ih}" stroke="#eef0f4"/>`;
    svg += `<text x="${xx}" y="${H - 10}" text-anchor="middle" class="tick">${esc(timeLabel(t, step))}</text>`;
  }
  if (pts.length) {
    let d = "";
    pts.forEach((p, i) => {
      const px = x(p.ts).toFixed(1);
      const py = y(p.value).toFixed(1);
      if (i === 0) d += `M${px},${py}`;
      else d += opts.step ? `H${px}V${py}` : `L${px},${py}`;
    });
    svg += `<path d="${d}" fill="none" stroke="#1f6feb" stroke-width="1.6" stroke-linejoin="round"/>`;
    const last = pts[pts.length - 1];
    svg += `<circle cx="${x(last.ts).toFixed(1)}" cy="${y(last.value).toFixed(1)}" r="3" fill="#1f6feb"/>`;
  } else {
    svg += `<text x="${PAD.l + iw / 2}" y="${PAD.t + ih / 2}" text-anchor="middle" class="empty">${esc(opts.empty || "—")}</text>`;
  }
  // The crosshair, moved by the page's pointer handler (console.js).
  svg += `<g class="cross" visibility="hidden"><line y1="${PAD.t}" y2="${PAD.t + ih}" stroke="#667"/><circle r="3.5" fill="#fff" stroke="#1f6feb" stroke-width="2"/><text class="readout" y="${PAD.t + 12}"></text></g>`;
  svg += `</svg>`;
  return { svg, geometry: { W, H, PAD, from, to, lo, hi, points: pts } };
}

/** The point nearest to a pointer at `fx` (0..1 across the SVG's width). */
export function nearest(geometry, fx) {
  const { W: w, PAD: p, from, to, points } = geometry;
  if (!points.length) return null;
  const t = from + ((fx * w - p.l) / (w - p.l - p.r)) * (to - from);
  let best = points[0];
  for (const q of points) if (Math.abs(q.ts - t) < Math.abs(best.ts - t)) best = q;
  const x = p.l + ((best.ts - from) / (to - from || 1)) * (w - p.l - p.r);
  const ih = geometry.H - p.t - p.b;
  const y = p.t + ih - ((best.value - geometry.lo) / (geometry.hi - geometry.lo || 1)) * ih;
  return { point: best, x, y };
}

export { fmtValue };
