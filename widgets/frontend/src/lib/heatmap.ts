// The heatmap every grid view draws (widgets/_heatmap.py `payload` builds what it reads): one synced Dict
// {values: float32 bytes (rows, cols) row-major, shape, rows, cols, title, lo, hi, scale}.

import { floats } from "./binary";
import { div } from "./dom";
import { has, type Binary, type Maybe } from "./model";

export type Scale = "diverging" | "sequential";

export interface HeatmapPayload {
  values: Binary;
  shape: [number, number];
  rows: string[];
  cols: string[];
  title: string;
  lo: number;
  hi: number;
  scale: Scale;
}

export type RGB = [number, number, number];

const BLUE: RGB = [59, 111, 182], WHITE: RGB = [255, 255, 255], RED: RGB = [192, 57, 43];
const INK: RGB = [84, 39, 143];
export const MISSING: RGB = [221, 221, 221];

/** True once Python has filled the payload (an empty Dict trait is `{}`). */
export function filled<P extends { shape: unknown }>(p: Maybe<P> | null | undefined): p is P {
  return has(p, "shape");
}

/** The colour a fraction `t` of the way from `a` to `b`. */
export function mix(a: RGB, b: RGB, t: number): RGB {
  return a.map((x, i) => Math.round(x + (b[i] - x) * t)) as RGB;
}

/** The colour of `v` on the payload's scale: clamped to [lo, hi] (hi < lo flips it); NaN is grey. */
export function colour(v: number, p: Pick<HeatmapPayload, "lo" | "hi" | "scale">): RGB {
  if (!Number.isFinite(v)) return MISSING;
  const t = Math.min(1, Math.max(0, (v - p.lo) / (p.hi - p.lo || 1)));
  if (p.scale === "sequential") return mix(WHITE, INK, t);
  return t < 0.5 ? mix(BLUE, WHITE, t * 2) : mix(WHITE, RED, t * 2 - 1);
}

/** Text that stays readable on `rgb`: white on dark cells, near-black on light ones. */
export function ink(rgb: RGB): string {
  return 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2] < 140 ? "white" : "#222";
}

function legend(p: HeatmapPayload): HTMLElement {
  const stops = [0, 0.25, 0.5, 0.75, 1].map((t) => `rgb(${colour(p.lo + t * (p.hi - p.lo), p)})`);
  const bar = div("lw-legend-bar");
  bar.style.background = `linear-gradient(to right, ${stops.join(", ")})`;
  const box = div("lw-legend");
  box.append(div("", p.lo.toFixed(2)), bar, div("", p.hi.toFixed(2)));
  return box;
}

export interface HeatmapOptions {
  /** Cell width and height in pixels. */
  cell?: number;
  /** Print each value with this many digits (none: colour only). */
  digits?: number | null;
  /** The [row, col] labels of the outlined cell. */
  selected?: readonly string[] | null;
  /** Makes cells buttons: called with the row and column labels. */
  onClick?: ((row: string, col: string) => void) | null;
}

/** A grid of cells coloured by value, row and column labels, a title and a colour legend. */
export function heatmap(p: HeatmapPayload, { cell = 20, digits = null, selected = null, onClick = null }:
  HeatmapOptions = {}): HTMLElement {
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
      d.style.color = ink(rgb);
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
