// Loss curves and the run controls of the training monitors (widgets/training_monitor.py,
// widgets/conflict_monitor.py). NaN = no value at that step (a task absent from the batch).

import { floats } from "./binary";
import { div, svgEl } from "./dom";
import type { Binary, Maybe, Model } from "./model";

/** `training_monitor.losses_payload`: steps (S,), values (K, S) row-major, one name per series. */
export interface LossesPayload {
  steps: Binary;
  values: Binary;
  names: string[];
  title: string;
}

/** The traits the run controls read and write (TrainingMonitor's). */
export interface RunTraits {
  status: string;
  step: number;
  total: number;
  running: boolean;
}

const PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf"];

function seriesColour(name: string, k: number): string {
  return name === "total" ? "#333" : PALETTE[k % PALETTE.length];
}

/** An SVG path of one series: a pen that lifts over missing values. */
export function seriesPath(steps: Float32Array, ys: Float32Array, X: (s: number) => number,
  Y: (v: number) => number): string {
  let d = "";
  let pen = false;
  for (let i = 0; i < steps.length; i++) {
    const v = ys[i];
    if (!Number.isFinite(v)) { pen = false; continue; }
    d += `${pen ? "L" : "M"}${X(steps[i]).toFixed(1)},${Y(v).toFixed(1)}`;
    pen = true;
  }
  return d;
}

export function lossChart(p: Maybe<LossesPayload>, { width = 420, height = 200 } = {}): HTMLElement {
  const root = div("lw-loss-chart");
  root.append(div("lw-title", p.title || "loss per task"));
  const steps = floats(p.steps);
  const values = floats(p.values);
  const names = p.names ?? [];
  const S = steps.length, K = names.length;
  if (!S || !K) {
    root.append(div("lw-hint", "no steps yet"));
    return root;
  }
  let lo = Infinity, hi = -Infinity;
  for (const v of values) if (Number.isFinite(v)) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
  if (!(hi > lo)) { hi = lo + 1; }
  const pad = { l: 40, r: 8, t: 6, b: 20 };
  const x0 = steps[0], x1 = Math.max(steps[S - 1], x0 + 1);
  const X = (s: number) => pad.l + ((s - x0) / (x1 - x0)) * (width - pad.l - pad.r);
  const Y = (v: number) => height - pad.b - ((v - lo) / (hi - lo)) * (height - pad.t - pad.b);
  const svg = svgEl("svg", { width, height, class: "lw-chart" });
  svg.append(svgEl("line", { x1: pad.l, y1: height - pad.b, x2: width - pad.r, y2: height - pad.b, stroke: "#999" }));
  svg.append(svgEl("line", { x1: pad.l, y1: pad.t, x2: pad.l, y2: height - pad.b, stroke: "#999" }));
  for (const [v, y] of [[hi, pad.t + 8], [lo, height - pad.b]]) {
    const t = svgEl("text", { x: 2, y, "font-size": 10, fill: "#555" });
    t.textContent = v.toFixed(2);
    svg.append(t);
  }
  const last = svgEl("text", { x: width - pad.r - 60, y: height - 4, "font-size": 10, fill: "#555" });
  last.textContent = `step ${steps[S - 1]}`;
  svg.append(last);
  for (let k = 0; k < K; k++) {
    const d = seriesPath(steps, values.subarray(k * S, (k + 1) * S), X, Y);
    svg.append(svgEl("path", { d, fill: "none", stroke: seriesColour(names[k], k),
      "stroke-width": names[k] === "total" ? 2 : 1.3, class: "lw-series", "data-name": names[k] }));
  }
  root.append(svg);
  const keys = div("lw-keys");
  names.forEach((n, k) => {
    const key = div("lw-key", n);
    key.style.borderLeft = `10px solid ${seriesColour(n, k)}`;
    keys.append(key);
  });
  root.append(keys);
  return root;
}

/** What the run button says: pause while running, else start / resume / done. */
export function runLabel({ running, step, total }: Pick<RunTraits, "running" | "step" | "total">): string {
  return running ? "pause" : step >= total ? "done" : step === 0 ? "start" : "resume";
}

// The status line and the pause / resume button: the button flips `running`, Python starts or
// stops the training thread and says so in `status`.
export function controls<T extends RunTraits>(model: Model<T>): HTMLElement {
  const bar = div("lw-buttons");
  const button = document.createElement("button");
  button.className = "lw-button lw-run";
  const state = { running: model.get("running"), step: model.get("step"), total: model.get("total") };
  button.textContent = runLabel(state);
  button.disabled = !state.running && state.step >= state.total;
  button.classList.toggle("lw-on", state.running);
  button.addEventListener("click", () => {
    model.set("running", !model.get("running") as T["running"]);
    model.save_changes();
  });
  bar.append(button, div("lw-status", model.get("status")));
  return bar;
}
