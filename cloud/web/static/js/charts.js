// uPlot charts (vendor/uplot, loaded as a classic script): time series with a min-max band per bucket and
// drag-to-zoom that asks the caller for data at the new range, and daily bar charts for statistics.

const TZ = 'Asia/Shanghai';
const uPlotLib = () => window.uPlot;

function tzDate(ts) { return uPlotLib().tzDate(new Date(ts * 1e3), TZ); }

/** Plot width in CSS pixels: the number of buckets worth asking the API for. */
export function plotWidth(u) { return Math.max(50, Math.round(u.bbox.width / devicePixelRatio)); }

/**
 * A time-series chart. `lines`: [{label, stroke}]; data is [xs, ...per line: avg, min, max]. The legend is
 * replaced by `readout` (an element showing the time and avg (min–max) of each line under the cursor).
 * `onZoom(startSec, endSec, widthPx)` is called when the user drags a range (the caller refetches).
 */
export function timeChart(el, { lines, height = 180, syncKey = 'vitals', onZoom, yRange, step = false, readout }) {
  const uPlot = uPlotLib();
  const series = [{}];
  const bands = [];
  lines.forEach((line, i) => {
    const avg = 1 + i * 3;
    series.push({ label: line.label, stroke: line.stroke, width: 1.5, spanGaps: false,
      paths: step ? uPlot.paths.stepped({ align: 1 }) : undefined });
    series.push({ label: `${line.label} min`, stroke: 'transparent', points: { show: false } });
    series.push({ label: `${line.label} max`, stroke: 'transparent', points: { show: false } });
    bands.push({ series: [avg + 2, avg + 1], fill: line.band || 'rgba(11,110,110,0.15)' });
  });
  const fmt = (v, line) => (v === null || v === undefined ? '—' : (+v).toFixed(line.decimals ?? 0));
  const opts = {
    width: Math.max(300, el.clientWidth || 600), height, tzDate, series, bands,
    legend: { show: false },
    // Charts share the cursor, not the drag: a selection belongs to the chart it was made on.
    cursor: { sync: { key: syncKey, filters: { pub: (type) => type === 'mousemove' || type === 'mouseleave' } },
      drag: { x: true, y: false, setScale: false } },
    // x is never ranged from the data: the caller's range is the truth (resizes would otherwise re-range it).
    scales: { x: { time: true, auto: false }, y: yRange ? { range: yRange } : {} },
    axes: [{}, { size: 50 }],
    hooks: {
      setSelect: [(u) => {
        if (u.select.width < 5 || !onZoom) return;
        const start = u.posToVal(u.select.left, 'x');
        const end = u.posToVal(u.select.left + u.select.width, 'x');
        u.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
        if (Number.isFinite(start) && Number.isFinite(end) && end > start) onZoom(start, end, plotWidth(u));
      }],
      setCursor: [(u) => {
        if (!readout) return;
        const idx = u.cursor.idx;
        if (idx === null || idx === undefined || u.data[0][idx] === undefined) { readout.textContent = ''; return; }
        const when = tzDate(u.data[0][idx]);
        const time = `${String(when.getHours()).padStart(2, '0')}:${String(when.getMinutes()).padStart(2, '0')}`;
        readout.textContent = `${time}  ${lines.map((line, i) => {
          const [avg, min, max] = [u.data[1 + i * 3][idx], u.data[2 + i * 3][idx], u.data[3 + i * 3][idx]];
          const range = min !== max && min !== null ? ` (${fmt(min, line)}–${fmt(max, line)})` : '';
          return `${lines.length > 1 ? `${line.label} ` : ''}${fmt(avg, line)}${range}`;
        }).join('  ')}`;
      }],
    },
  };
  const empty = [[], ...lines.flatMap(() => [[], [], []])];
  const plot = new uPlot(opts, empty, el);
  el.uplot = plot; // for tests and the console
  let range = null;
  // A resize re-ranges x from the data: put the requested range back.
  const resize = () => {
    plot.setSize({ width: Math.max(300, el.clientWidth), height });
    if (range) plot.setScale('x', { min: range[0], max: range[1] });
  };
  const observer = new ResizeObserver(resize);
  observer.observe(el);
  return {
    plot,
    setData(data, xRange) {
      range = xRange || null;
      plot.setData(data, !range);
      if (range) plot.setScale('x', { min: range[0], max: range[1] });
    },
    width: () => plotWidth(plot),
    destroy() { observer.disconnect(); plot.destroy(); },
  };
}

/**
 * Buckets of the vitals API as uPlot columns, with a null inserted across gaps so lines break there. A gap is
 * a spacing over three times the usual one (buckets narrower than the sampling interval are mostly empty,
 * and that is not a gap) and over three buckets.
 */
export function bucketColumns(buckets, bucketSeconds) {
  const centres = buckets.map((b) => Date.parse(b.start) / 1000 + bucketSeconds / 2);
  const spacings = centres.slice(1).map((x, i) => x - centres[i]).sort((a, b) => a - b);
  const usual = spacings.length ? spacings[Math.floor(spacings.length / 2)] : bucketSeconds;
  const gap = 3 * Math.max(usual, bucketSeconds);
  const xs = []; const avg = []; const min = []; const max = [];
  buckets.forEach((b, i) => {
    const x = centres[i];
    if (i > 0 && x - centres[i - 1] > gap) {
      xs.push(centres[i - 1] + bucketSeconds); avg.push(null); min.push(null); max.push(null);
    }
    xs.push(x); avg.push(b.avg); min.push(b.min); max.push(b.max);
  });
  return [xs, avg, min, max];
}

/** Several series on one x axis: merge [xs, ...cols] tables by x (missing points are null). */
export function mergeColumns(tables) {
  const xs = [...new Set(tables.flatMap((t) => t[0]))].sort((a, b) => a - b);
  const index = new Map(xs.map((x, i) => [x, i]));
  const out = [xs];
  for (const table of tables) {
    for (let c = 1; c < table.length; c++) {
      const col = new Array(xs.length).fill(null);
      table[0].forEach((x, i) => { col[index.get(x)] = table[c][i]; });
      out.push(col);
    }
  }
  return out;
}

/** A daily bar chart: `days` ISO dates, `groups` [{label, values, fill}] stacked. */
export function barChart(el, { days, groups, height = 220, yLabel = '' }) {
  const uPlot = uPlotLib();
  const xs = days.map((d) => Date.parse(`${d}T12:00:00+08:00`) / 1000);
  const stacked = [];
  let acc = new Array(xs.length).fill(0);
  for (const g of groups) {
    acc = acc.map((v, i) => v + (g.values[i] || 0));
    stacked.push([...acc]);
  }
  const bars = uPlot.paths.bars({ size: [0.6, 40] });
  const series = [{}];
  // Drawn from the tallest stack down so each group shows its own slice.
  for (let i = groups.length - 1; i >= 0; i--) {
    const g = groups[i];
    series.push({ label: g.label, fill: g.fill, stroke: g.fill, paths: bars, points: { show: false },
      value: (u, v, si, idx) => (idx === null ? '—' : String(groups[i].values[idx] ?? 0)) });
  }
  const data = [xs, ...stacked.slice().reverse()];
  const plot = new uPlot({
    width: Math.max(300, el.clientWidth || 600), height, tzDate, series,
    scales: { x: { time: true }, y: { range: (u, min, max) => [0, Math.max(1, max * 1.1)] } },
    axes: [{}, { label: yLabel, size: 50, incrs: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000] }],
    legend: { live: true },
  }, data, el);
  const observer = new ResizeObserver(() => plot.setSize({ width: Math.max(300, el.clientWidth), height }));
  observer.observe(el);
  return { plot, destroy() { observer.disconnect(); plot.destroy(); } };
}
