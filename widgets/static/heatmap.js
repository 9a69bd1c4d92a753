// Shared drawing code of the heatmap widgets: widgets/_heatmap.py puts it before each widget's module.
// A payload (one synced Dict trait): {values: float32 DataView (row-major), shape: [rows, cols],
// rows: [...], cols: [...], title, lo, hi, scale: "diverging" | "sequential"}.

function floats(view) {
  // DataView / typed array / ArrayBuffer -> Float32Array (a copy: the offset may not be 4-aligned)
  if (!view) return new Float32Array(0);
  const buffer = view.buffer ?? view;
  const start = view.byteOffset ?? 0;
  return new Float32Array(buffer.slice(start, start + view.byteLength));
}

const BLUE = [59, 111, 182], WHITE = [255, 255, 255], RED = [192, 57, 43], INK = [84, 39, 143];
const MISSING = [221, 221, 221];

function mix(a, b, t) {
  return a.map((x, i) => Math.round(x + (b[i] - x) * t));
}

function colour(v, p) {
  if (!Number.isFinite(v)) return MISSING;
  const t = Math.min(1, Math.max(0, (v - p.lo) / (p.hi - p.lo || 1)));
  if (p.scale === "sequential") return mix(WHITE, INK, t);
  return t < 0.5 ? mix(BLUE, WHITE, t * 2) : mix(WHITE, RED, t * 2 - 1);
}

function div(className, text = "") {
  const d = document.createElement("div");
  d.className = className;
  d.textContent = text;
  return d;
}

function legend(p) {
  const stops = [0, 0.25, 0.5, 0.75, 1].map((t) => `rgb(${colour(p.lo + t * (p.hi - p.lo), p)})`);
  const bar = div("lw-legend-bar");
  bar.style.background = `linear-gradient(to right, ${stops.join(", ")})`;
  const box = div("lw-legend");
  box.append(div("", p.lo.toFixed(2)), bar, div("", p.hi.toFixed(2)));
  return box;
}

// A grid of cells coloured by value; `digits` prints the values, `onClick(row, col)` makes cells buttons.
function heatmap(p, { cell = 20, digits = null, selected = null, onClick = null } = {}) {
  const [nr, nc] = p.shape;
  const values = floats(p.values);
  const root = div("lw-heatmap");
  if (p.title) root.append(div("lw-title", p.title));
  if (nr * nc === 0) {
    root.append(div("lw-hint", "nothing to show"));
    return root;
  }
  const grid = div("lw-grid");
  grid.style.gridTemplateColumns = `max-content repeat(${nc}, ${cell}px)`;
  grid.append(div(""));
  for (const c of p.cols) grid.append(div("lw-col", c));
  for (let i = 0; i < nr; i++) {
    grid.append(div("lw-row", p.rows[i]));
    for (let j = 0; j < nc; j++) {
      const v = values[i * nc + j];
      const rgb = colour(v, p);
      const d = div("lw-cell", digits === null || !Number.isFinite(v) ? "" : v.toFixed(digits));
      d.style.height = `${cell}px`;
      d.style.background = `rgb(${rgb})`;
      d.style.color = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2] < 140 ? "white" : "#222";
      d.dataset.row = p.rows[i];
      d.dataset.col = p.cols[j];
      d.title = `${p.rows[i]} · ${p.cols[j]}: ${Number.isFinite(v) ? v.toFixed(3) : "n/a"}`;
      if (selected && selected[0] === p.rows[i] && selected[1] === p.cols[j]) d.classList.add("lw-selected");
      if (onClick) {
        d.classList.add("lw-clickable");
        d.addEventListener("click", () => onClick(p.rows[i], p.cols[j]));
      }
      grid.append(d);
    }
  }
  root.append(grid, legend(p));
  return root;
}
