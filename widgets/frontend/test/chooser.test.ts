// The chooser view (widgets/_chooser.py): buttons set `choice`, the optional select sets `option`, a map
// computed for another choice or option is dimmed until Python answers.

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { render, type ChooserTraits } from "../src/chooser";
import { installDom } from "./dom";
import { FakeModel } from "./fake_model";

const window = installDom();

function map(choice: string, option: string) {
  return { values: new DataView(new Float32Array([0.5, 1]).buffer), shape: [1, 2] as [number, number],
    rows: ["r"], cols: ["0", "1"], title: `${option}: ${choice}`, lo: 0, hi: 1, scale: "sequential" as const,
    choice, option };
}

function state(options: string[]): ChooserTraits {
  const option = options[0] ?? "";
  return { choices: ["a", "b"], choice: "a", options, option, heatmap: map("a", option), aside: {},
    selected: [], detail: "", cell: 44, curve: {} };
}

describe("chooser", () => {
  it("draws a select for the options; a change sets `option` and dims the map until Python answers", () => {
    const model = new FakeModel(state(["all layers", "layer 1"]));
    const el = document.createElement("div") as unknown as HTMLElement;
    render({ model, el });
    const select = el.querySelector("select.lw-option") as unknown as HTMLSelectElement;
    assert.deepEqual([...select.options].map((o) => o.value), ["all layers", "layer 1"]);
    select.value = "layer 1";
    select.dispatchEvent(new window.Event("change") as unknown as Event);
    assert.deepEqual(model.saved, [{ option: "layer 1" }]);
    assert.ok(el.querySelector(".lw-main")!.classList.contains("lw-stale"));
    model.python({ heatmap: map("a", "layer 1") });
    assert.ok(!el.querySelector(".lw-main")!.classList.contains("lw-stale"));
    assert.deepEqual([...el.querySelectorAll(".lw-main .lw-cell")].map((c) => c.textContent), ["0.50", "1.00"]);
  });

  it("draws no select without options, and a button click sets `choice`", () => {
    const model = new FakeModel(state([]));
    const el = document.createElement("div") as unknown as HTMLElement;
    render({ model, el });
    assert.equal(el.querySelector("select"), null);
    (el.querySelectorAll(".lw-button")[1] as unknown as HTMLElement).click();
    assert.deepEqual(model.saved, [{ choice: "b" }]);
  });
});
