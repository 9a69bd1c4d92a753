// InterferenceMap view (widgets/interference_map.py): controls for the merge set, weights, density and
// metric; Python recomputes and sends `heatmap`. Until it answers, the map is dimmed and labelled.
// The metric menu lists `metric_labels`, the table Python titles its maps with.

import "./styles/heatmap.css";
import { div, listen, menu, slider } from "./lib/dom";
import { filled, heatmap, type HeatmapPayload } from "./lib/heatmap";
import { hosted } from "./lib/host";
import type { Maybe, RenderProps } from "./lib/model";

/** InterferenceMap's synced traits. */
export interface InterferenceMapTraits {
  names: string[];
  active: string[];
  weights: Record<string, number>;
  density: number;
  metric: string;
  /** metric -> its label (widgets/interference_map.py METRICS). */
  metric_labels: Record<string, string>;
  status: string;
  heatmap: Maybe<HeatmapPayload>;
}

export function render({ model, el }: RenderProps<InterferenceMapTraits>) {
  el.classList.add("lw-interference-map");
  const controls = div("lw-controls");
  const rows: Record<string, { box: HTMLInputElement; weight: HTMLInputElement; label: HTMLElement }> = {};
  for (const name of model.get("names")) {
    const box = document.createElement("input");
    box.type = "checkbox";
    const check = document.createElement("label");
    check.append(box, ` ${name}`);
    const weight = slider(-1, 2, 0.05, 1);
    const label = div("", "");
    weight.addEventListener("input", () => (label.textContent = `×${Number(weight.value).toFixed(2)}`));
    box.addEventListener("change", () => request());
    weight.addEventListener("change", () => request());
    controls.append(check, weight, label);
    rows[name] = { box, weight, label };
  }
  const density = slider(0.01, 1, 0.01, 0.2);
  const densityLabel = div("", "");
  density.addEventListener("input", () => (densityLabel.textContent = Number(density.value).toFixed(2)));
  density.addEventListener("change", () => request());
  const metric = menu(model.get("metric_labels"));
  metric.addEventListener("change", () => request(0));
  controls.append(div("", "density"), density, densityLabel, div("", "metric"), metric, div(""));
  const status = div("lw-status");
  const map = div("");

  // controls -> model, debounced; the map is marked stale at once
  let timer: ReturnType<typeof setTimeout> | undefined;
  function request(delay = 300) {
    map.classList.add("lw-stale");
    status.textContent = "computing…";
    clearTimeout(timer);
    timer = setTimeout(() => {
      const names = model.get("names");
      model.set({
        active: names.filter((n) => rows[n].box.checked),
        weights: Object.fromEntries(names.map((n) => [n, Number(rows[n].weight.value)])),
        density: Number(density.value),
        metric: metric.value,
        status: "computing…",
      });
      model.save_changes();
    }, delay);
  }

  // model -> controls and map
  function sync() {
    const active = model.get("active"), weights = model.get("weights");
    for (const [name, r] of Object.entries(rows)) {
      r.box.checked = active.includes(name);
      r.weight.value = String(weights[name] ?? 1);
      r.label.textContent = `×${Number(r.weight.value).toFixed(2)}`;
    }
    density.value = String(model.get("density"));
    densityLabel.textContent = Number(model.get("density")).toFixed(2);
    metric.value = model.get("metric");
  }
  function draw() {
    const p = model.get("heatmap");
    map.replaceChildren(filled(p) ? heatmap(p, { cell: 18 }) : div("lw-hint", "no map"));
    const current = model.get("status") === "current";
    map.classList.toggle("lw-stale", !current);
    status.textContent = current ? "current" : model.get("status");
  }
  const stopSync = listen(model, ["active", "weights", "density", "metric"], sync);
  const stopDraw = listen(model, ["heatmap", "status"], draw);
  sync();
  draw();
  el.replaceChildren(controls, status, map);
  return () => {
    clearTimeout(timer);
    stopSync();
    stopDraw();
  };
}

export default hosted(render);
