// Loss curves of the training monitors (widgets/training_monitor.py, widgets/conflict_monitor.py).
// A losses payload: {steps: float32 DataView (S,), values: float32 DataView (K, S) row-major,
// names: [K series names], title}. NaN = no value at that step (a task absent from the batch).

const PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf"];
const SVG = "http://www.w3.org/2000/svg";

function svgEl(tag, attrs = {}) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  return e;
}

function lossChart(p, { width = 420, height = 200 } = {}) {
  const root = div("lw-loss-chart");
  root.append(div("lw-title", p.title || "loss per task"));
  const steps = floats(p.steps);
  const values = floats(p.values);
  const S = steps.length, K = (p.names || []).length;
  if (!S || !K) {
    root.append(div("lw-hint", "no steps yet"));
    return root;
  }
  let lo = Infinity, hi = -Infinity;
  for (const v of values) if (Number.isFinite(v)) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
  if (!(hi > lo)) { hi = lo + 1; }
  const pad = { l: 40, r: 8, t: 6, b: 20 };
  const x0 = steps[0], x1 = Math.max(steps[S - 1], x0 + 1);
  const X = (s) => pad.l + ((s - x0) / (x1 - x0)) * (width - pad.l - pad.r);
  const Y = (v) => height - pad.b - ((v - lo) / (hi - lo)) * (height - pad.t - pad.b);
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
    let d = "";
    let pen = false;
    for (let i = 0; i < S; i++) {
      const v = values[k * S + i];
      if (!Number.isFinite(v)) { pen = false; continue; }
      d += `${pen ? "L" : "M"}${X(steps[i]).toFixed(1)},${Y(v).toFixed(1)}`;
      pen = true;
    }
    const colour = p.names[k] === "total" ? "#333" : PALETTE[k % PALETTE.length];
    svg.append(svgEl("path", { d, fill: "none", stroke: colour, "stroke-width": p.names[k] === "total" ? 2 : 1.3,
                               class: "lw-series", "data-name": p.names[k] }));
  }
  root.append(svg);
  const keys = div("lw-keys");
  p.names.forEach((n, k) => {
    const key = div("lw-key", n);
    key.style.borderLeft = `10px solid ${n === "total" ? "#333" : PALETTE[k % PALETTE.length]}`;
    keys.append(key);
  });
  root.append(keys);
  return root;
}

// The status line and the pause / resume button: the button flips `running`, Python starts or
// stops the training thread and says so in `status`.
function controls(model) {
  const bar = div("lw-buttons");
  const button = document.createElement("button");
  button.className = "lw-button lw-run";
  const running = model.get("running");
  const step = model.get("step");
  button.textContent = running ? "pause" : step >= model.get("total") ? "done" : step === 0 ? "start" : "resume";
  button.disabled = !running && model.get("step") >= model.get("total");
  button.classList.toggle("lw-on", running);
  button.addEventListener("click", () => {
    model.set("running", !model.get("running"));
    model.save_changes();
  });
  bar.append(button, div("lw-status", model.get("status")));
  return bar;
}
