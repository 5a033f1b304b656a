// Line charts on <canvas> for the admin console: a fixed time window ending
// now (the newest point at the right edge), a y scale from 0 to a round
// number above the largest value, gaps where a value is missing, and a
// legend with each line's latest value. Nothing is loaded from elsewhere.

const FONT = '11px system-ui, "Noto Sans", "Noto Sans CJK SC", sans-serif';

// The smallest of 1, 2, 2.5, 5 × 10^k that is at least v.
export function roundUp(v) {
  if (!(v > 0)) return 1;
  const k = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * k >= v * (1 - 1e-9)) return m * k;
  return 10 * k;
}

export function fmt(v, digits) {
  if (v === null || v === undefined || Number.isNaN(v)) return '—';
  if (digits !== undefined) return v.toFixed(digits);
  const a = Math.abs(v);
  if (a >= 1e6) return (v / 1e6).toFixed(a >= 1e7 ? 0 : 1) + 'M';
  if (a >= 1e4) return (v / 1e3).toFixed(a >= 1e5 ? 0 : 1) + 'k';
  if (a >= 100 || Number.isInteger(v)) return String(Math.round(v));
  return v.toFixed(a >= 10 ? 1 : 2);
}

/**
 * Draw `lines` ([{label, color, points: [[t, v|null]]}]) on `canvas` for
 * the window (now - windowMs, now]. `empty`: a text shown instead when no
 * line has a value. Records what it drew on the canvas's dataset (for
 * tests): points (values drawn), last (latest value of each line), max.
 */
export function drawChart(canvas, { lines, now, windowMs, unit = '', empty = 'no data yet' }) {
  const dpr = (typeof devicePixelRatio === 'number' && devicePixelRatio) || 1;
  const cssW = canvas.clientWidth || 360, cssH = canvas.clientHeight || 160;
  if (canvas.width !== Math.round(cssW * dpr) || canvas.height !== Math.round(cssH * dpr)) {
    canvas.width = Math.round(cssW * dpr);
    canvas.height = Math.round(cssH * dpr);
  }
  const g = canvas.getContext('2d');
  g.setTransform(dpr, 0, 0, dpr, 0, 0);
  g.clearRect(0, 0, cssW, cssH);
  g.font = FONT;

  const from = now - windowMs;
  const values = [];
  for (const l of lines) for (const [t, v] of l.points) if (t > from && t <= now && v !== null && Number.isFinite(v)) values.push(v);
  const max = roundUp(Math.max(0, ...values));
  const pad = { l: 44, r: 10, t: 8, b: 20 };
  const w = cssW - pad.l - pad.r, h = cssH - pad.t - pad.b;
  const x = (t) => pad.l + ((t - from) / windowMs) * w;
  const y = (v) => pad.t + h - (Math.min(v, max) / max) * h;

  // Grid and axes.
  g.strokeStyle = '#e2e6ec';
  g.fillStyle = '#6b7585';
  g.lineWidth = 1;
  g.textAlign = 'right';
  g.textBaseline = 'middle';
  for (let i = 0; i <= 4; i++) {
    const v = (max * i) / 4, yy = Math.round(y(v)) + 0.5;
    g.beginPath(); g.moveTo(pad.l, yy); g.lineTo(pad.l + w, yy); g.stroke();
    if (values.length) g.fillText(fmt(v) + (i === 4 && unit ? ' ' + unit : ''), pad.l - 6, yy);
  }
  g.textBaseline = 'top';
  const minutes = Math.round(windowMs / 60000);
  for (const [frac, text] of [[0, `−${minutes} min`], [0.5, `−${minutes / 2} min`], [1, 'now']]) {
    g.textAlign = frac === 0 ? 'left' : frac === 1 ? 'right' : 'center';
    g.fillText(text, pad.l + frac * w, pad.t + h + 5);
  }

  canvas.dataset.points = String(values.length);
  canvas.dataset.max = String(max);
  canvas.dataset.last = JSON.stringify(lines.map((l) => {
    for (let i = l.points.length - 1; i >= 0; i--) if (l.points[i][1] !== null) return l.points[i][1];
    return null;
  }));
  if (!values.length) {
    g.textAlign = 'center';
    g.textBaseline = 'middle';
    g.fillStyle = '#9aa3b0';
    g.font = '13px system-ui, "Noto Sans", sans-serif';
    g.fillText(empty, pad.l + w / 2, pad.t + h / 2);
    return;
  }

  // Lines: a gap where a value is missing or two points are far apart.
  g.save();
  g.beginPath();
  g.rect(pad.l, pad.t - 2, w, h + 4);
  g.clip();
  for (const l of lines) {
    g.strokeStyle = l.color;
    g.lineWidth = 2;
    g.lineJoin = 'round';
    g.beginPath();
    let pen = false, lastT = null;
    for (const [t, v] of l.points) {
      if (t <= from - windowMs / 60 || t > now) { pen = false; continue; }
      if (v === null || !Number.isFinite(v) || (lastT !== null && t - lastT > windowMs / 20)) {
        pen = false;
        lastT = v === null ? null : t;
        if (v === null) continue;
      }
      if (!pen) { g.moveTo(x(t), y(v)); pen = true; } else g.lineTo(x(t), y(v));
      lastT = t;
    }
    g.stroke();
  }
  g.restore();
}

/** The legend: each line's label, colour and latest value. */
export function legend(el, lines, unit = '', digits) {
  el.replaceChildren(...lines.map((l) => {
    const s = document.createElement('span');
    s.className = 'key';
    const sw = document.createElement('i');
    sw.style.background = l.color;
    let last = null;
    for (let i = l.points.length - 1; i >= 0; i--) if (l.points[i][1] !== null) { last = l.points[i][1]; break; }
    s.append(sw, `${l.label} ${fmt(last, last === null ? undefined : digits)}${unit && last !== null ? ' ' + unit : ''}`);
    return s;
  }));
}
