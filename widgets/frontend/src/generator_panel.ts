// GeneratorPanel view (widgets/generator_panel.py): a description box (or a pick of an expert's own
// description), the proximity bars, a 2-D map of the experts with the new task, "generate N" and
// "evaluate" (buttons send {action}); Python works in the background and answers with the traits.

import "./styles/heatmap.css";
import "./styles/generator.css";
import { button, div, input, labelled, listen, menu, svgEl } from "./lib/dom";
import { hosted } from "./lib/host";
import { has, type Maybe, type RenderProps } from "./lib/model";

export interface Proximity {
  experts: string[];
  weights: number[];
  cosines: number[];
}

export interface ExpertMap {
  names: string[];
  kinds: string[];
  x: number[];
  y: number[];
  weights: number[];
}

export interface ScoreRow {
  label: string;
  kind: string;
  value: number;
}

export interface GenScores {
  rows: ScoreRow[];
  metric: string;
  higher_is_better: boolean;
  task: string;
  limit: number;
}

/** GeneratorPanel's synced traits. */
export interface GeneratorPanelTraits {
  description: string;
  experts: string[];
  expert_descriptions: string[];
  proximity: Maybe<Proximity>;
  expert_map: Maybe<ExpertMap>;
  n: number;
  seed: number;
  samples: string[];
  task: string;
  eval_limit: number;
  scores: Maybe<GenScores>;
  progress: { done: number; total: number; label: string };
  busy: boolean;
  status: string;
}

/** Proximity bars: one row per expert (name, bar of its weight, the weight). */
export function proximityBars(p: Maybe<Proximity>): HTMLElement {
  const box = div("lw-prox");
  if (!has(p, "experts")) return div("lw-hint", "type a description to see which experts it is near");
  const max = Math.max(1e-9, ...p.weights);
  p.experts.forEach((e, i) => {
    const bar = div(p.weights[i] > 0 ? "lw-prox-bar" : "lw-prox-bar lw-zero");
    bar.style.width = `${Math.max(2, (200 * p.weights[i]) / max)}px`;
    bar.title = `cosine ${p.cosines[i].toFixed(3)}`;
    bar.dataset.expert = e;
    box.append(div("lw-row", e), bar, div("lw-cell", p.weights[i].toFixed(3)));
  });
  return box;
}

/** The experts (green, sized by weight) and the query (orange star) on the PCA plane. */
export function mapSvg(m: Maybe<ExpertMap>): SVGSVGElement {
  const W = 360, H = 260, pad = 40;
  const svg = svgEl("svg", { width: W, height: H, class: "lw-gen-map" });
  if (!has(m, "names")) return svg;
  const span = (v: number[]) => [Math.min(...v), Math.max(...v)];
  const [x0, x1] = span(m.x), [y0, y1] = span(m.y);
  const sx = (v: number) => pad + ((v - x0) / (x1 - x0 || 1)) * (W - 2 * pad);
  const sy = (v: number) => H - pad - ((v - y0) / (y1 - y0 || 1)) * (H - 2 * pad);
  m.names.forEach((name, i) => {
    const query = m.kinds[i] === "query";
    const x = sx(m.x[i]), y = sy(m.y[i]);
    const dot = query
      ? svgEl("text", { x, y: y + 6, "text-anchor": "middle", "font-size": 20, fill: "#d95f02", class: "lw-query" })
      : svgEl("circle", { cx: x, cy: y, r: 4 + 10 * m.weights[i], fill: "#1b9e77", class: "lw-expert" });
    if (query) dot.textContent = "★";
    const label = svgEl("text", { x, y: y - 10, "text-anchor": "middle", "font-size": 10, fill: "#444" });
    label.textContent = query ? "new task" : name;
    svg.append(dot, label);
  });
  return svg;
}

/** The evaluation table: each run's score on the task, samples first. */
export function scoresTable(s: Maybe<GenScores>): HTMLElement[] {
  if (!has(s, "rows")) return [];
  const t = document.createElement("table");
  t.className = "lw-gen-scores";
  const head = document.createElement("tr");
  for (const h of ["run", s.higher_is_better ? s.metric : `${s.metric} ↓`]) {
    const th = document.createElement("th");
    th.textContent = h;
    head.append(th);
  }
  t.append(head);
  for (const r of s.rows) {
    const tr = document.createElement("tr");
    tr.className = `lw-kind-${r.kind}`;
    for (const c of [r.label, Number(r.value).toFixed(4)]) {
      const td = document.createElement("td");
      td.textContent = c;
      tr.append(td);
    }
    t.append(tr);
  }
  return [t, div("lw-hint", `${s.task}: first ${s.limit} held-out examples`)];
}

export function render({ model, el }: RenderProps<GeneratorPanelTraits>) {
  el.classList.add("lw-generator", "lw-heatmap");
  const text = document.createElement("textarea");
  text.rows = 2;
  text.placeholder = "describe the task, e.g. classify a quote as being about computers or sports";
  text.className = "lw-description";
  text.value = model.get("description");
  text.addEventListener("change", () => {
    model.set("description", text.value);
    model.save_changes();
  });
  const picks: Record<string, string> = { "": "…or pick an expert's description" };
  model.get("experts").forEach((e, i) => (picks[`e${i}`] = e)); // not "0": integer keys would come first
  const pick = menu(picks);
  pick.className = "lw-select";
  pick.addEventListener("change", () => {
    if (pick.value === "") return;
    text.value = model.get("expert_descriptions")[Number(pick.value.slice(1))];
    model.set("description", text.value);
    model.save_changes();
  });
  const n = input("number", { min: "1", max: "16", value: String(model.get("n")), className: "lw-n" });
  n.style.width = "4em";
  n.addEventListener("change", () => {
    model.set("n", Math.max(1, Number(n.value) || 1));
    model.save_changes();
  });
  const gen = button("generate N", "lw-button lw-generate");
  gen.addEventListener("click", () => model.send({ action: "generate" }));
  const evaluate = button("evaluate", "lw-button lw-evaluate");
  evaluate.addEventListener("click", () => model.send({ action: "evaluate" }));
  const controls = div("lw-buttons");
  controls.append(labelled("N", n), gen, evaluate);
  const live = div("lw-live");
  const draw = () => {
    if (document.activeElement !== text) text.value = model.get("description");
    const p = model.get("progress");
    const bar = div("lw-progress");
    const fill = div("lw-progress-fill");
    fill.style.width = `${p.total ? (100 * p.done) / p.total : 0}%`;
    bar.append(fill);
    const status = div("lw-status", model.get("status"));
    status.append(" ", bar, ` ${p.total ? `${p.done}/${p.total} ${p.label}` : ""}`);
    const row = div("lw-gen-row");
    const left = div("lw-gen-col");
    left.append(div("lw-title", "proximity to the experts"), proximityBars(model.get("proximity")));
    const right = div("lw-gen-col");
    right.append(div("lw-title", "experts and the new task (PCA)"), mapSvg(model.get("expert_map")));
    row.append(left, right);
    const samples = div("lw-samples", model.get("samples").length ? `samples: ${model.get("samples").join(", ")}` : "");
    gen.disabled = evaluate.disabled = model.get("busy");
    live.replaceChildren(status, row, samples, ...scoresTable(model.get("scores")));
  };
  el.replaceChildren(div("lw-title", "SG-LoRA generator"), text, pick, controls, live);
  const stop = listen(model, ["description", "proximity", "expert_map", "samples", "scores", "progress", "busy",
    "status"], draw);
  draw();
  return stop;
}

export default hosted(render);
