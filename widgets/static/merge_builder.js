// MergeBuilder view (widgets/merge_builder.py). Controls -> settings traits + a new `request` number,
// debounced (300 ms) with one request in flight; Python answers with the previews and `answered`.
// A preview whose `answered` is behind the latest settings is dimmed and labelled, never shown as current.
// Traits: names, methods, controls, active, weights, method, params, seed, metric, request, answered,
// status, error_map, interference, angles, summary, eval_limit, progress, scores, eval_status, name,
// export_path, exported, committed, notice. Buttons send {action: "evaluate" | "commit" | "export"}.

const DEBOUNCE_MS = 300;
const INTERFERENCE = { conflict_rate: "sign-conflict rate", overlap: "overlap", mass_lost: "mass lost" };

function input(type, props = {}) {
  const i = document.createElement("input");
  i.type = type;
  Object.assign(i, props);
  return i;
}

function button(text, className = "lw-button") {
  const b = document.createElement("button");
  b.textContent = text;
  b.className = className;
  return b;
}

function labelled(text, control) {
  const l = document.createElement("label");
  l.className = "lw-field";
  l.append(div("lw-field-name", text), control);
  return l;
}

function fmt(v, digits = 3) {
  return v === null || v === undefined || !Number.isFinite(v) ? "–" : Number(v).toFixed(digits);
}

function render({ model, el }) {
  el.classList.add("lw-merge-builder");
  let dirty = false; // local control changes not yet sent
  let queued = false; // the debounce ran out while a request was in flight: send on its answer
  let timer = null;

  // -- sources: a checkbox and a weight slider each
  const sources = div("lw-controls lw-sources");
  const rows = {};
  for (const name of model.get("names")) {
    const box = input("checkbox");
    const check = document.createElement("label");
    check.className = "lw-source";
    check.append(box, ` ${name}`);
    const weight = input("range", { min: -1, max: 2, step: 0.05, value: 1 });
    weight.dataset.source = name;
    const shown = div("lw-value", "");
    weight.addEventListener("input", () => { shown.textContent = `×${Number(weight.value).toFixed(2)}`; changed(); });
    box.addEventListener("change", () => changed());
    sources.append(check, weight, shown);
    rows[name] = { box, weight, shown };
  }

  // -- method, seed, and the method's own parameters (built from `controls`)
  const method = document.createElement("select");
  method.className = "lw-method";
  for (const m of model.get("methods")) method.append(new Option(m, m));
  const seed = input("number", { min: 0, step: 1, className: "lw-seed" });
  const metric = document.createElement("select");
  for (const [value, text] of Object.entries(INTERFERENCE)) metric.append(new Option(text, value));
  const top = div("lw-row-controls");
  top.append(labelled("method", method), labelled("seed", seed), labelled("interference", metric));
  const about = div("lw-hint lw-about");
  const paramBox = div("lw-controls lw-params");
  let paramInputs = {}; // name -> {spec, get(), set(v)}

  function buildParams(m, values) {
    about.textContent = model.get("about")[m] || "";
    paramInputs = {};
    paramBox.replaceChildren();
    for (const spec of model.get("controls")[m] || []) {
      const value = values[spec.name] ?? spec.default;
      let control, get, set;
      if (spec.kind === "bool") {
        control = input("checkbox");
        get = () => control.checked;
        set = (v) => (control.checked = Boolean(v));
        control.addEventListener("change", () => changed());
      } else if (spec.kind === "choice") {
        control = document.createElement("select");
        for (const c of spec.choices) control.append(new Option(String(c), String(c)));
        get = () => spec.choices[control.selectedIndex]; // the value itself (null stays null)
        set = (v) => (control.selectedIndex = Math.max(0, spec.choices.findIndex((c) => c === v)));
        control.addEventListener("change", () => changed());
      } else if (spec.kind === "float" && !spec.optional) {
        control = input("range", { min: spec.min, max: spec.max, step: spec.step });
        get = () => Number(control.value);
        set = (v) => (control.value = v);
        control.addEventListener("input", () => { show(); changed(); });
      } else if (spec.kind === "int" || spec.kind === "float") {
        control = input("number", { min: spec.min, max: spec.max, step: spec.step,
          placeholder: spec.optional ? "auto" : "" });
        get = () => (control.value === "" ? null : Number(control.value));
        set = (v) => (control.value = v === null || v === undefined ? "" : v);
        control.addEventListener("input", () => changed());
      } else {
        control = input("text", { placeholder: spec.optional ? "none" : "" });
        get = () => (control.value === "" ? null : control.value);
        set = (v) => (control.value = v ?? "");
        control.addEventListener("change", () => changed());
      }
      control.dataset.param = spec.name;
      const shown = div("lw-value", "");
      const show = () => (shown.textContent = spec.kind === "float" && !spec.optional ? Number(get()).toFixed(2) : "");
      set(value);
      show();
      paramBox.append(div("lw-field-name", spec.name), control, shown);
      paramInputs[spec.name] = { spec, get, set: (v) => { set(v); show(); } };
    }
    if (!Object.keys(paramInputs).length) paramBox.append(div("lw-hint", "no parameters"), div(""), div(""));
  }
  method.addEventListener("change", () => { // parameters the two methods share keep their values
    const before = Object.fromEntries(Object.entries(paramInputs).map(([k, p]) => [k, p.get()]));
    buildParams(method.value, before);
    changed();
  });
  seed.addEventListener("input", () => changed());
  metric.addEventListener("change", () => changed(0));

  // -- previews, status, summary
  const status = div("lw-status lw-merge-status");
  const summary = div("lw-status lw-summary");
  const panes = { error_map: div("lw-preview"), interference: div("lw-preview"), angles: div("lw-preview") };
  const previews = div("lw-previews");
  previews.append(panes.error_map, panes.interference, panes.angles);

  // -- quick evaluation
  const evalButton = button("evaluate");
  const limit = input("number", { min: 1, step: 1, className: "lw-limit" });
  const bar = document.createElement("progress");
  bar.className = "lw-progress";
  const progressText = div("lw-status", "");
  const evalStatus = div("lw-status lw-eval-status");
  const table = div("lw-scores");
  const evalRow = div("lw-row-controls");
  evalRow.append(evalButton, labelled("examples per task", limit), bar, progressText);

  // -- commit and export
  const name = input("text", { className: "lw-name" });
  const commit = button("commit");
  const path = input("text", { className: "lw-path", placeholder: "merged_adapters/<name>" });
  const exportButton = button("export");
  const notice = div("lw-status lw-notice");
  const actions = div("lw-row-controls");
  actions.append(labelled("name", name), commit, labelled("path", path), exportButton);

  // controls -> model: debounced, one request in flight, the latest settings win
  function settings() {
    const names = model.get("names");
    const params = {};
    for (const [k, p] of Object.entries(paramInputs)) params[k] = p.get();
    return {
      active: names.filter((n) => rows[n].box.checked),
      weights: Object.fromEntries(names.map((n) => [n, Number(rows[n].weight.value)])),
      method: method.value, params, seed: Number(seed.value || 0), metric: metric.value,
    };
  }
  const inFlight = () => model.get("answered") < model.get("request");
  function changed(delay = DEBOUNCE_MS) {
    dirty = true;
    clearTimeout(timer);
    timer = setTimeout(flush, delay);
    draw();
  }
  function flush(force = false) {
    clearTimeout(timer);
    if (!dirty) return;
    if (inFlight() && !force) {
      queued = true; // sent when the answer in flight arrives
      return;
    }
    queued = dirty = false;
    model.set({ ...settings(), request: model.get("request") + 1, status: "computing…" });
    model.save_changes();
    draw();
  }
  function act(action) {
    model.set({ name: name.value, export_path: path.value, eval_limit: Number(limit.value || 1) });
    if (dirty) flush(true); // the action applies to what the controls show
    else model.save_changes();
    model.send({ action });
  }
  evalButton.addEventListener("click", () => act("evaluate"));
  commit.addEventListener("click", () => act("commit"));
  exportButton.addEventListener("click", () => act("export"));
  limit.addEventListener("change", () => { model.set("eval_limit", Number(limit.value || 1)); model.save_changes(); });
  name.addEventListener("change", () => { model.set("name", name.value); model.save_changes(); });
  path.addEventListener("change", () => { model.set("export_path", path.value); model.save_changes(); });

  // model -> controls (not while the user has unsent changes)
  function sync() {
    if (dirty) return;
    const active = model.get("active"), weights = model.get("weights");
    for (const [n, r] of Object.entries(rows)) {
      r.box.checked = active.includes(n);
      r.weight.value = weights[n] ?? 1;
      r.shown.textContent = `×${Number(r.weight.value).toFixed(2)}`;
    }
    if (method.value !== model.get("method") || !Object.keys(paramInputs).length) {
      method.value = model.get("method");
      buildParams(method.value, model.get("params"));
    } else {
      for (const [k, v] of Object.entries(model.get("params"))) paramInputs[k]?.set(v);
    }
    seed.value = model.get("seed");
    metric.value = model.get("metric");
  }
  function syncFields() {
    limit.value = model.get("eval_limit");
    if (document.activeElement !== name) name.value = model.get("name");
    if (document.activeElement !== path) path.value = model.get("export_path");
  }

  function current() {
    return !dirty && !inFlight() && model.get("status") === "current";
  }
  function draw() {
    const isCurrent = current();
    const waiting = dirty || inFlight();
    status.textContent = isCurrent ? "current" : waiting ? "computing…" : model.get("status");
    status.classList.toggle("lw-current", isCurrent);
    status.classList.toggle("lw-error", !waiting && model.get("status").startsWith("error"));
    for (const [key, pane] of Object.entries(panes)) {
      const p = model.get(key);
      const cell = key === "angles" ? 48 : 14;
      const map = p && p.shape ? heatmap(p, { cell, digits: key === "angles" ? 2 : null })
        : div("lw-hint", key === "error_map" ? "no merge" : "needs two sources");
      pane.replaceChildren(map);
      pane.classList.toggle("lw-stale", !isCurrent);
      if (!isCurrent && p && p.shape) pane.prepend(div("lw-stale-label", "stale: for earlier settings"));
    }
    summary.textContent = model.get("summary");
    summary.classList.toggle("lw-stale", !isCurrent);
  }
  function answered() {
    if (queued) flush(); // the latest settings, which waited for this answer
    draw();
  }
  function drawEval() {
    const p = model.get("progress");
    bar.max = Math.max(1, p.total || 0);
    bar.value = p.done || 0;
    progressText.textContent = p.total ? `${p.done}/${p.total} ${p.label}` : "";
    const st = model.get("eval_status");
    evalStatus.textContent = `scores: ${st}`;
    const s = model.get("scores");
    table.classList.toggle("lw-stale", st !== "current" || dirty);
    if (!s || !s.rows) { table.replaceChildren(); return; }
    const t = document.createElement("table");
    const head = ["task", "metric", "merged", "solo (adapter)", "normalized"];
    t.append(...[head].map((h) => { const tr = document.createElement("tr");
      h.forEach((x) => { const th = document.createElement("th"); th.textContent = x; tr.append(th); }); return tr; }));
    for (const r of s.rows) {
      const tr = document.createElement("tr");
      const metricName = r.higher_is_better ? r.metric : `${r.metric} ↓`;
      for (const x of [r.task, metricName, fmt(r.merged), r.solo_adapter ? `${fmt(r.solo)} (${r.solo_adapter})` : "–",
        fmt(r.normalized, 2)]) {
        const td = document.createElement("td"); td.textContent = x; tr.append(td);
      }
      t.append(tr);
    }
    const note = div("lw-hint", `normalized = merged ÷ solo (solo ÷ merged for a loss ↓); ${s.limit} examples per task`);
    table.replaceChildren(t, note);
  }
  function drawNotice() {
    notice.textContent = model.get("notice");
  }

  const settingsEvents = ["active", "weights", "method", "params", "seed", "metric"].map((n) => `change:${n}`);
  const previewEvents = ["request", "status", "error_map", "interference", "angles", "summary"]
    .map((n) => `change:${n}`);
  const evalEvents = ["progress", "scores", "eval_status"].map((n) => `change:${n}`);
  const fieldEvents = ["name", "export_path", "eval_limit"].map((n) => `change:${n}`);
  const noticeEvents = ["notice", "exported", "committed"].map((n) => `change:${n}`);
  const handlers = [[settingsEvents, sync], [previewEvents, draw], [evalEvents, drawEval],
    [fieldEvents, syncFields], [noticeEvents, drawNotice], [["change:answered"], answered]];
  for (const [events, fn] of handlers) for (const e of events) model.on(e, fn);
  sync(); syncFields(); draw(); drawEval(); drawNotice();

  const left = div("lw-merge-controls");
  left.append(div("lw-title", "sources and weights"), sources, top, about, div("lw-title", "method parameters"),
    paramBox);
  el.replaceChildren(left, status, previews, summary, div("lw-title", "quick evaluation"), evalRow, evalStatus,
    table, div("lw-title", "commit / export"), actions, notice);
  return () => {
    clearTimeout(timer);
    for (const [events, fn] of handlers) for (const e of events) model.off(e, fn);
  };
}

export default { render };
