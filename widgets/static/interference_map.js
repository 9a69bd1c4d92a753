// InterferenceMap view (widgets/interference_map.py): controls for the merge set, weights, density and
// metric; Python recomputes and sends `heatmap`. Until it answers, the map is dimmed and labelled.
// Traits: names, active, weights, density, metric, status, heatmap (a payload as in heatmap.js).

const METRIC_LABELS = { conflict_rate: "sign-conflict rate", overlap: "overlap", mass_lost: "mass lost" };

function slider(min, max, step, value) {
  const s = document.createElement("input");
  Object.assign(s, { type: "range", min, max, step, value });
  return s;
}

function render({ model, el }) {
  el.classList.add("lw-interference-map");
  const controls = div("lw-controls");
  const rows = {};  // name -> {box, weight, label}
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
  const metric = document.createElement("select");
  for (const [value, text] of Object.entries(METRIC_LABELS)) metric.append(new Option(text, value));
  metric.addEventListener("change", () => request(0));
  controls.append(div("", "density"), density, densityLabel, div("", "metric"), metric, div(""));
  const status = div("lw-status");
  const map = div("");

  // controls -> model, debounced; the map is marked stale at once
  let timer = null;
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
      r.weight.value = weights[name] ?? 1;
      r.label.textContent = `×${Number(r.weight.value).toFixed(2)}`;
    }
    density.value = model.get("density");
    densityLabel.textContent = Number(model.get("density")).toFixed(2);
    metric.value = model.get("metric");
  }
  function draw() {
    const p = model.get("heatmap");
    map.replaceChildren(p && p.shape ? heatmap(p, { cell: 18 }) : div("lw-hint", "no map"));
    const current = model.get("status") === "current";
    map.classList.toggle("lw-stale", !current);
    status.textContent = current ? "current" : model.get("status");
  }
  const events = ["change:active", "change:weights", "change:density", "change:metric"];
  for (const e of events) model.on(e, sync);
  model.on("change:heatmap", draw);
  model.on("change:status", draw);
  sync();
  draw();
  el.replaceChildren(controls, status, map);
  return () => {
    clearTimeout(timer);
    for (const e of events) model.off(e, sync);
    model.off("change:heatmap", draw);
    model.off("change:status", draw);
  };
}

export default { render };
