// The merge builder's view (src/merge_builder.ts) in a DOM against a fake model, Python played by hand:
// what a user does (a slider, a method, a button) becomes requests; previews are labelled stale until
// the answer to the latest request arrives.

import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, it, mock } from "node:test";
import { render, type MergeBuilderTraits } from "../src/merge_builder";
import { installDom } from "./dom";
import { FakeModel } from "./fake_model";

installDom();

const payload = (title: string) => ({ values: new DataView(new Float32Array([0.1, 0.2, 0.3, 0.4]).buffer),
  shape: [2, 2] as [number, number], rows: ["q", "v"], cols: ["0", "1"], title, lo: 0, hi: 1,
  scale: "sequential" as const });

/** MergeBuilder's first state, as Python sends it (answered = request: the previews are current). */
function initial(): MergeBuilderTraits {
  return {
    names: ["a", "b"], methods: ["task_arithmetic", "ties"],
    controls: { task_arithmetic: [], ties: [{ name: "density", kind: "float", default: 0.2, min: 0.01, max: 1,
      step: 0.01 }] },
    about: { task_arithmetic: "sum", ties: "trim, elect, merge" },
    metric_labels: { conflict_rate: "sign-conflict rate", overlap: "overlap of kept entries" },
    active: ["a", "b"], weights: { a: 1, b: 1 }, method: "task_arithmetic", params: {}, seed: 0,
    metric: "conflict_rate", request: 0, answered: 0, computing: -1, stale: false, status: "current",
    error_map: payload("error 0"), interference: payload("interference 0"), angles: payload("angles 0"),
    summary: "task_arithmetic of a, b", eval_limit: 8, progress: { done: 0, total: 0, label: "" }, scores: {},
    eval_status: "not run", name: "merged", export_path: "", exported: "", committed: [], notice: "",
  };
}

function mount() {
  const model = new FakeModel(initial());
  const el = document.createElement("div") as unknown as HTMLElement;
  const cleanup = render({ model, el });
  const $ = <E extends Element>(s: string) => el.querySelector(s) as E;
  const status = () => $(".lw-merge-status").textContent;
  const stale = () => el.querySelectorAll(".lw-preview.lw-stale").length;
  const labels = () => el.querySelectorAll(".lw-stale-label").length;
  const weight = (name: string, value: number) => {
    const s = $<HTMLInputElement>(`input[data-source="${name}"]`);
    s.value = String(value);
    s.dispatchEvent(new Event("input"));
  };
  // Python: previews for the request it was sent, then answered (one hold_sync block)
  const answer = () => {
    const n = model.get("request");
    model.python({ error_map: payload(`error ${n}`), summary: `merge ${n}`, answered: n, status: "current" });
  };
  return { model, el, cleanup, $, status, stale, labels, weight, answer };
}

describe("merge builder view", () => {
  beforeEach(() => mock.timers.enable({ apis: ["setTimeout"] }));
  afterEach(() => mock.timers.reset());

  it("shows Python's settings, labels and current previews", () => {
    const { $, el, status, stale } = mount();
    assert.equal(status(), "current");
    assert.equal(stale(), 0);
    assert.equal($<HTMLSelectElement>(".lw-method").value, "task_arithmetic");
    const options = [...el.querySelectorAll("select")[1].querySelectorAll("option")].map((o) => o.textContent);
    assert.deepEqual(options, ["sign-conflict rate", "overlap of kept entries"]); // metric_labels, not a copy
    assert.equal(el.querySelectorAll(".lw-preview .lw-cell").length, 12);
  });

  it("labels the previews stale from the first move until the answer to the latest request", () => {
    const { model, el, status, stale, labels, weight, answer } = mount();
    weight("a", 0.5);
    assert.equal(status(), "computing…");
    assert.equal(stale(), 3);
    assert.equal(labels(), 3);
    assert.equal(model.saved.length, 0, "debounced");
    mock.timers.tick(300);
    assert.equal(model.saved.length, 1);
    assert.deepEqual(model.saved[0].weights, { a: 0.5, b: 1 });
    assert.equal(model.saved[0].request, 1);
    model.python({ status: "computing…", computing: 1, stale: true }); // Python computes it in the background
    assert.equal(el.querySelector(".lw-stale-label")!.textContent, "stale: for request 0, computing request 1…");
    weight("b", 0.25); // while request 1 computes: sent at once, Python cancels request 1
    mock.timers.tick(300);
    assert.equal(model.saved.length, 2, "the second gesture is not held back behind request 1");
    assert.deepEqual(model.saved[1].weights, { a: 0.5, b: 0.25 });
    assert.equal(model.saved[1].request, 2);
    model.python({ status: "computing…", computing: 2, stale: true });
    assert.equal(el.querySelector(".lw-stale-label")!.textContent, "stale: for request 0, computing request 2…");
    assert.equal(stale(), 3);
    assert.equal(status(), "computing…");
    answer(); // the answer to request 2 (request 1 was cancelled)
    assert.equal(status(), "current");
    assert.equal(stale(), 0);
    assert.equal(labels(), 0);
  });

  it("keeps an answer to an older request stale when a newer one went out", () => {
    const { model, status, stale, weight } = mount();
    weight("a", 0.5);
    mock.timers.tick(300);
    weight("a", 0.75);
    mock.timers.tick(300);
    assert.equal(model.get("request"), 2);
    model.python({ error_map: payload("error 1"), answered: 1, status: "current" }); // finished before 2 came
    assert.equal(status(), "computing…");
    assert.equal(stale(), 3);
  });

  it("builds a method's parameters from its specs and sends them with the method", () => {
    const { model, $, el } = mount();
    const method = $<HTMLSelectElement>(".lw-method");
    method.value = "ties";
    method.dispatchEvent(new Event("change"));
    const density = el.querySelector('[data-param="density"]') as HTMLInputElement;
    assert.equal(Number(density.value), 0.2);
    mock.timers.tick(300);
    assert.equal(model.saved[0].method, "ties");
    assert.deepEqual(model.saved[0].params, { density: 0.2 });
  });

  it("sends the controls' settings before the message of a button", () => {
    const { model, el, $, weight } = mount();
    weight("a", 2);
    $<HTMLInputElement>(".lw-limit").value = "3";
    const evaluate = [...el.querySelectorAll("button")].find((b) => b.textContent === "evaluate")!;
    evaluate.dispatchEvent(new Event("click"));
    assert.equal(model.saved.length, 1, "the dirty settings went out at once, not after the debounce");
    assert.equal(model.saved[0].request, 1);
    assert.equal(model.saved[0].eval_limit, 3);
    assert.deepEqual(model.sent, [{ content: { action: "evaluate" }, afterSaves: 1 }]);
  });

  it("follows Python's settings unless the user has unsent changes, and cleans up", () => {
    const { model, $, weight, cleanup } = mount();
    model.python({ method: "ties", params: { density: 0.5 } });
    assert.equal($<HTMLSelectElement>(".lw-method").value, "ties");
    weight("a", 0.1);
    model.python({ weights: { a: 1.5, b: 1 } }); // ignored: the user's change wins
    assert.equal(Number($<HTMLInputElement>('input[data-source="a"]').value), 0.1);
    assert.equal(typeof cleanup, "function");
    (cleanup as () => void)();
    assert.equal(model.listening(), 0);
    mock.timers.tick(300);
    assert.equal(model.saved.length, 0, "the pending debounce was dropped");
  });
});
