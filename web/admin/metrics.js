// The admin console's live figures from GET /metrics (Prometheus text
// format): parsing, per-second rates of counters, the p99 of a histogram
// between two samples, and a bounded window of points. No DOM here, so
// Node can test it too.

/**
 * Parse Prometheus text into a Map: metric name -> [{labels, value}].
 * @param {string} text
 */
export function parseMetrics(text) {
  const out = new Map();
  for (const raw of String(text).split('\n')) {
    const line = raw.trim();
    if (!line || line[0] === '#') continue;
    const m = /^([A-Za-z_:][A-Za-z0-9_:]*)(\{([^}]*)\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const labels = {};
    if (m[3]) for (const l of m[3].matchAll(/([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]] = l[2].replace(/\\(.)/g, '$1');
    const v = m[4] === '+Inf' ? Infinity : m[4] === '-Inf' ? -Infinity : Number(m[4]);
    if (!out.has(m[1])) out.set(m[1], []);
    out.get(m[1]).push({ labels, value: v });
  }
  return out;
}

/** Sum of a metric's samples (all label sets); undefined when absent. */
export function total(metrics, name) {
  const s = metrics.get(name);
  if (!s || !s.length) return undefined;
  return s.reduce((a, x) => a + x.value, 0);
}

/** Largest of a metric's samples; undefined when absent. */
export function largest(metrics, name) {
  const s = metrics.get(name);
  if (!s || !s.length) return undefined;
  return Math.max(...s.map((x) => x.value));
}

/** A histogram's cumulative buckets [[le, count]] in order, or null. */
export function histogram(metrics, name) {
  const b = metrics.get(name + '_bucket');
  if (!b || !b.length) return null;
  const buckets = b.map((x) => [x.labels.le === '+Inf' ? Infinity : Number(x.labels.le), x.value])
    .filter(([le]) => !Number.isNaN(le)).sort((x, y) => x[0] - y[0]);
  return buckets.length ? buckets : null;
}

/**
 * The q-quantile of what a histogram observed between two samples of its
 * cumulative buckets, interpolated linearly inside the bucket (as
 * Prometheus' histogram_quantile does); null when nothing was observed.
 * A quantile in the +Inf bucket is the largest finite bound.
 */
export function quantileBetween(q, before, after) {
  if (!after) return null;
  const prev = new Map((before || []).map(([le, c]) => [le, c]));
  const delta = after.map(([le, c]) => [le, Math.max(0, c - (prev.get(le) || 0))]);
  const n = delta.length ? delta[delta.length - 1][1] : 0;
  if (!(n > 0)) return null;
  const rank = q * n;
  let lower = 0, below = 0;
  for (const [le, c] of delta) {
    if (c >= rank) {
      if (le === Infinity) return lower;
      const inBucket = c - below;
      return inBucket > 0 ? lower + (le - lower) * ((rank - below) / inBucket) : le;
    }
    lower = le;
    below = c;
  }
  return lower;
}

// The figures of one point, from two raw samples dt seconds apart.
const rate = (a, b, dt) => {
  if (a === undefined || b === undefined || !(dt > 0)) return null;
  return (b >= a ? b - a : b) / dt; // a counter that went down: the process restarted
};

/** What a sample keeps of /metrics (raw: gauges, counters, the histogram). */
export function sample(metrics, t) {
  return {
    t,
    connections: total(metrics, 'basestation_connections'),
    users: total(metrics, 'basestation_users_online'),
    in: total(metrics, 'basestation_messages_in_total'),
    out: total(metrics, 'basestation_messages_out_total'),
    lastSeq: total(metrics, 'basestation_last_seq'),
    commit: histogram(metrics, 'basestation_db_commit_seconds'),
    // Replica lag (messages behind the stream) exists only in cluster mode.
    lag: largest(metrics, 'basestation_replica_lag'),
  };
}

/** A point of the charts from the previous raw sample and this one. */
export function point(prev, cur) {
  const dt = prev ? (cur.t - prev.t) / 1000 : 0;
  const p99 = prev ? quantileBetween(0.99, prev.commit, cur.commit) : null;
  return {
    t: cur.t,
    connections: cur.connections ?? null,
    users: cur.users ?? null,
    inRate: prev ? rate(prev.in, cur.in, dt) : null,
    outRate: prev ? rate(prev.out, cur.out, dt) : null,
    p99ms: p99 === null ? null : p99 * 1000,
    lag: cur.lag ?? null,
  };
}

/** The last `windowMs` of points; `add` takes a raw sample. */
export class Series {
  constructor(windowMs = 600000) {
    this.windowMs = windowMs;
    this.points = [];
    this.prev = null;
  }

  add(raw) {
    // A gap longer than the window (a sleeping laptop): start over.
    if (this.prev && raw.t - this.prev.t > this.windowMs) this.prev = null;
    const p = point(this.prev, raw);
    this.prev = raw;
    this.points.push(p);
    this.trim(raw.t);
    return p;
  }

  trim(now) {
    const from = now - this.windowMs;
    let i = 0;
    while (i < this.points.length && this.points[i].t < from) i++;
    if (i) this.points.splice(0, i);
  }

  /** [[t, value]] of one field (null values kept: they are gaps). */
  of(field) { return this.points.map((p) => [p.t, p[field]]); }

  /** Whether any point has a value for the field. */
  has(field) { return this.points.some((p) => p[field] !== null && p[field] !== undefined); }

  // The points only: after a reload the first rates wait for a second sample.
  toJSON() { return { points: this.points }; }

  static from(json, windowMs, now) {
    const s = new Series(windowMs);
    if (json && Array.isArray(json.points)) {
      s.points = json.points.filter((p) => p && Number.isFinite(p.t) && p.t <= now);
      s.trim(now);
    }
    return s;
  }
}
