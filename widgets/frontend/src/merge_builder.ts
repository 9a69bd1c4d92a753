// MergeBuilder view (widgets/merge_builder.py). Controls -> settings traits + a new `request` number,
// debounced (lib/requests.ts), sent at once also while an earlier request computes: Python computes in
// the background and cancels the older one (`computing` names the request it computes, `stale` says the
// previews shown are for earlier settings). Python answers with the previews and `answered`. A preview
// whose `answered` is behind the latest settings is dimmed and labelled, never shown as current. Buttons send {action: "evaluate" | "commit" | "export"}.

import "./styles/heatmap.css";
import "./styles/merge_builder.css";
import { button, div, input, labelled, listen, menu, option } from "./lib/dom";
import { filled, heatmap, type HeatmapPayload } from "./lib/heatmap";
import { hosted } from "./lib/host";
import type { Maybe, RenderProps } from "./lib/model";
import { paramControl, type ParamInput, type ParamSpec, type ParamValue } from "./lib/param_controls";
import { Requests } from "./lib/requests";
import { scoresTable, type Scores } from "./lib/scores_table";

/** MergeBuilder's synced traits. */
export interface MergeBuilderTraits {
  // on offer (read-only)
  names: string[];
  methods: string[];
  controls: Record<string, ParamSpec[]>;
  about: Record<string, string>;
  /** interference metric -> its label (widgets/interference_map.py METRICS). */
  metric_labels: Record<string, string>;
  // the settings
  active: string[];
  weights: Record<string, number>;
  method: string;
  params: Record<string, ParamValue>;
  seed: number;
  metric: string;
  request: number;
  // the previews
  answered: number;
  /** The request whose previews Python computes in the background (-1: none). */
  computing: number;
  /** The previews shown belong to earlier settings (newer ones compute). */
  stale: boolean;
  status: string;
  error_map: Maybe<HeatmapPayload>;
  interference: Maybe<HeatmapPayload>;
  angles: Maybe<HeatmapPayload>;
  summary: string;
  // quick evaluation
  eval_limit: number;
  progress: { done: number; total: number; label: string };
  scores: Maybe<Scores>;
  eval_status: string;
  // commit and export
  name: string;
  export_path: string;
  exported: string;
  committed: string[];
  notice: string;
}

/** The actions the buttons send; MergeBuilder's `on_msg` handler answers each. */
export type Action = "evaluate" | "commit" | "export";

const PREVIEWS = ["error_map", "interference", "angles"] as const;

export function render({ model, el }: RenderProps<MergeBuilderTraits>) {
  el.classList.add("lw-merge-builder");

  // -- sources: a checkbox and a weight slider each
  const sources = div("lw-controls lw-sources");
  const rows: Record<string, { box: HTMLInputElement; weight: HTMLInputElement; shown: HTMLElement }> = {};
  for (const name of model.get("names")) {
    const box = input("checkbox");
    const check = document.createElement("label");
    check.className = "lw-source";
    check.append(box, ` ${name}`);
    const weight = input("range", { min: "-1", max: "2", step: "0.05", value: "1" });
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
  for (const m of model.get("methods")) method.append(option(m, m));
  const seed = input("number", { min: "0", step: "1", className: "lw-seed" });
  const metric = menu(model.get("metric_labels"));
  const top = div("lw-row-controls");
  top.append(labelled("method", method), labelled("seed", seed), labelled("interference", metric));
  const about = div("lw-hint lw-about");
  const paramBox = div("lw-controls lw-params");
  let paramInputs: Record<string, ParamInput> = {};

  function buildParams(m: string, values: Record<string, ParamValue>) {
    about.textContent = model.get("about")[m] || "";
    paramInputs = {};
    paramBox.replaceChildren();
    for (const spec of model.get("controls")[m] || []) {
      const { control, shown, input: p } = paramControl(spec, values[spec.name], () => changed());
      paramBox.append(div("lw-field-name", spec.name), control, shown);
      paramInputs[spec.name] = p;
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
  const limit = input("number", { min: "1", step: "1", className: "lw-limit" });
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
  function settings(): Partial<MergeBuilderTraits> {
    const names = model.get("names");
    const params: Record<string, ParamValue> = {};
    for (const [k, p] of Object.entries(paramInputs)) params[k] = p.get();
    return {
      active: names.filter((n) => rows[n].box.checked),
      weights: Object.fromEntries(names.map((n) => [n, Number(rows[n].weight.value)])),
      method: method.value, params, seed: Number(seed.value || 0), metric: metric.value,
    };
  }
  const requests = new Requests(model, settings, () => draw(), undefined, true);
  const changed = (delay?: number) => requests.changed(delay);
  function act(action: Action) {
    model.set({ name: name.value, export_path: path.value, eval_limit: Number(limit.value || 1) });
    requests.settle(); // the action applies to what the controls show
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
    if (requests.dirty) return;
    const active = model.get("active"), weights = model.get("weights");
    for (const [n, r] of Object.entries(rows)) {
      r.box.checked = active.includes(n);
      r.weight.value = String(weights[n] ?? 1);
      r.shown.textContent = `×${Number(r.weight.value).toFixed(2)}`;
    }
    if (method.value !== model.get("method") || !Object.keys(paramInputs).length) {
      method.value = model.get("method");
      buildParams(method.value, model.get("params"));
    } else {
      for (const [k, v] of Object.entries(model.get("params"))) paramInputs[k]?.set(v);
    }
    seed.value = String(model.get("seed"));
    metric.value = model.get("metric");
  }
  function syncFields() {
    limit.value = String(model.get("eval_limit"));
    if (document.activeElement !== name) name.value = model.get("name");
    if (document.activeElement !== path) path.value = model.get("export_path");
  }

  function staleLabel(): string {
    const computing = model.get("computing") ?? -1;
    const answered = model.get("answered");
    return computing >= 0 && (model.get("stale") || computing > answered)
      ? `stale: for request ${answered}, computing request ${computing}…` : "stale: for earlier settings";
  }
  function draw() {
    const isCurrent = requests.current();
    const waiting = requests.waiting();
    status.textContent = isCurrent ? "current" : waiting ? "computing…" : model.get("status");
    status.classList.toggle("lw-current", isCurrent);
    status.classList.toggle("lw-error", !waiting && model.get("status").startsWith("error"));
    for (const key of PREVIEWS) {
      const pane = panes[key];
      const p = model.get(key);
      const map = filled(p) ? heatmap(p, { cell: key === "angles" ? 48 : 14, digits: key === "angles" ? 2 : null })
        : div("lw-hint", key === "error_map" ? "no merge" : "needs two sources");
      pane.replaceChildren(map);
      pane.classList.toggle("lw-stale", !isCurrent);
      if (!isCurrent && filled(p)) pane.prepend(div("lw-stale-label", staleLabel()));
    }
    summary.textContent = model.get("summary");
    summary.classList.toggle("lw-stale", !isCurrent);
  }
  function drawEval() {
    const p = model.get("progress");
    bar.max = Math.max(1, p.total || 0);
    bar.value = p.done || 0;
    progressText.textContent = p.total ? `${p.done}/${p.total} ${p.label}` : "";
    const st = model.get("eval_status");
    evalStatus.textContent = `scores: ${st}`;
    table.classList.toggle("lw-stale", st !== "current" || requests.dirty);
    table.replaceChildren(...scoresTable(model.get("scores")));
  }
  function drawNotice() {
    notice.textContent = model.get("notice");
  }

  const stops = [
    listen(model, ["active", "weights", "method", "params", "seed", "metric"], sync),
    listen(model, ["request", "status", "computing", "stale", "error_map", "interference", "angles", "summary"],
      draw),
    listen(model, ["progress", "scores", "eval_status"], drawEval),
    listen(model, ["name", "export_path", "eval_limit"], syncFields),
    listen(model, ["notice", "exported", "committed"], drawNotice),
    listen(model, ["answered"], () => requests.answered()),
  ];
  sync(); syncFields(); draw(); drawEval(); drawNotice();

  const left = div("lw-merge-controls");
  left.append(div("lw-title", "sources and weights"), sources, top, about, div("lw-title", "method parameters"),
    paramBox);
  el.replaceChildren(left, status, previews, summary, div("lw-title", "quick evaluation"), evalRow, evalStatus,
    table, div("lw-title", "commit / export"), actions, notice);
  return () => {
    requests.dispose();
    stops.forEach((stop) => stop());
  };
}

export default hosted(render);
