// The generator panel's pure parts: the proximity bars, the experts' map and the scores table.

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { mapSvg, proximityBars, scoresTable } from "../src/generator_panel";
import { installDom } from "./dom";

installDom();

describe("generator panel", () => {
  it("draws one bar per expert, widest for the largest weight, grey off the top-k", () => {
    const box = proximityBars({ experts: ["a", "b", "c"], weights: [0.25, 0.75, 0], cosines: [0.5, 0.9, 0.1] });
    const bars = [...box.querySelectorAll(".lw-prox-bar")] as HTMLElement[];
    assert.equal(bars.length, 3);
    assert.equal(bars[1].style.width, "200px");
    assert.equal(parseFloat(bars[0].style.width).toFixed(2), (200 / 3).toFixed(2));
    assert.ok(bars[2].classList.contains("lw-zero") && !bars[1].classList.contains("lw-zero"));
    assert.equal(proximityBars({}).className, "lw-hint"); // nothing yet: a hint
  });

  it("places the experts and the query on the map", () => {
    const svg = mapSvg({ names: ["a", "b", "query"], kinds: ["expert", "expert", "query"], x: [0, 1, 0.5],
      y: [0, 1, 0.5], weights: [0.5, 0.5, 1] });
    assert.equal(svg.querySelectorAll(".lw-expert").length, 2);
    assert.equal(svg.querySelectorAll(".lw-query").length, 1);
    assert.equal(mapSvg({}).childNodes.length, 0);
  });

  it("marks a loss column and lists the runs", () => {
    const [table, note] = scoresTable({ rows: [{ label: "s0", kind: "sample", value: 1.5 },
      { label: "base", kind: "base", value: 2 }], metric: "loss", higher_is_better: false, task: "t", limit: 4 });
    assert.equal(table.querySelectorAll("tr").length, 3);
    assert.ok(table.textContent!.includes("loss ↓") && table.textContent!.includes("1.5000"));
    assert.ok(note.textContent!.includes("first 4"));
    assert.deepEqual(scoresTable({}), []);
  });
});
