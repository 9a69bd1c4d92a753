// The heatmap helpers and the small pure helpers of the views: colours, binary payloads, labels.

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { floats, typed } from "../src/lib/binary";
import { colour, filled, heatmap, ink, MISSING, mix } from "../src/lib/heatmap";
import { runLabel, seriesPath } from "../src/lib/loss_chart";
import { cells, fmt } from "../src/lib/scores_table";
import { dominant } from "../src/token_routing";
import { installDom } from "./dom";

installDom();

const diverging = { lo: -1, hi: 1, scale: "diverging" as const };

describe("heatmap colours", () => {
  it("runs blue -> white -> red on a diverging scale, clamped, NaN grey", () => {
    assert.deepEqual(colour(-1, diverging), [59, 111, 182]);
    assert.deepEqual(colour(0, diverging), [255, 255, 255]);
    assert.deepEqual(colour(1, diverging), [192, 57, 43]);
    assert.deepEqual(colour(5, diverging), colour(1, diverging));
    assert.deepEqual(colour(NaN, diverging), MISSING);
    assert.deepEqual(colour(Infinity, diverging), MISSING);
  });

  it("starts white on a sequential scale, and flips when hi < lo", () => {
    const seq = { lo: 0, hi: 1, scale: "sequential" as const };
    assert.deepEqual(colour(0, seq), [255, 255, 255]);
    assert.deepEqual(colour(1, seq), [84, 39, 143]);
    assert.deepEqual(colour(1, { ...diverging, lo: 1, hi: -1 }), colour(-1, diverging));
    assert.deepEqual(colour(3, { lo: 3, hi: 3, scale: "sequential" }), [255, 255, 255]); // no range: no NaN
  });

  it("mixes halfway and picks readable ink", () => {
    assert.deepEqual(mix([0, 0, 0], [255, 255, 255], 0.5), [128, 128, 128]);
    assert.equal(ink([84, 39, 143]), "white");
    assert.equal(ink([255, 255, 255]), "#222");
  });

  it("knows an empty Dict trait from a payload", () => {
    assert.ok(!filled({}));
    assert.ok(!filled(null));
    assert.ok(filled({ shape: [0, 0] }));
  });
});

describe("heatmap grid", () => {
  const p = { values: new DataView(new Float32Array([0.25, NaN, -1, 1]).buffer), shape: [2, 2] as [number, number],
    rows: ["q", "v"], cols: ["0", "1"], title: "cosine", lo: -1, hi: 1, scale: "diverging" as const };

  it("draws a labelled cell per value, values printed, NaN shown as n/a, the selected cell outlined", () => {
    const root = heatmap(p, { digits: 2, selected: ["v", "0"] });
    const cells = [...root.querySelectorAll(".lw-cell")] as HTMLElement[];
    assert.deepEqual(cells.map((c) => c.textContent), ["0.25", "", "-1.00", "1.00"]);
    assert.equal(cells[1].title, "q · 1: n/a");
    assert.deepEqual(cells.map((c) => c.classList.contains("lw-selected")), [false, false, true, false]);
    assert.equal(root.querySelector(".lw-title")!.textContent, "cosine");
  });

  it("makes cells buttons that name their row and column", () => {
    const clicks: string[][] = [];
    const root = heatmap(p, { onClick: (r, c) => clicks.push([r, c]) });
    (root.querySelector('.lw-cell[data-row="v"][data-col="1"]') as HTMLElement).dispatchEvent(new Event("click"));
    assert.deepEqual(clicks, [["v", "1"]]);
  });

  it("says so when there is nothing to show", () => {
    const root = heatmap({ ...p, values: null, shape: [0, 3] });
    assert.equal(root.querySelector(".lw-hint")!.textContent, "nothing to show");
  });
});

describe("binary payloads", () => {
  it("reads float32 from a DataView at an unaligned offset, an ArrayBuffer, or nothing", () => {
    const bytes = new Uint8Array(1 + 8);
    bytes.set(new Uint8Array(new Float32Array([1.5, NaN]).buffer), 1);
    const got = floats(new DataView(bytes.buffer, 1, 8));
    assert.equal(got[0], 1.5);
    assert.ok(Number.isNaN(got[1]));
    assert.deepEqual([...floats(new Float32Array([2, 3]).buffer)], [2, 3]);
    assert.equal(floats(null).length, 0);
    assert.deepEqual([...typed(new DataView(new Uint8Array([7, 9]).buffer), Uint8Array)], [7, 9]);
  });
});

describe("view helpers", () => {
  it("lifts the pen of a loss curve over missing steps", () => {
    const id = (x: number) => x;
    assert.equal(seriesPath(new Float32Array([0, 1, 2, 3]), new Float32Array([1, NaN, 2, 3]), id, id),
      "M0.0,1.0M2.0,2.0L3.0,3.0");
  });

  it("labels the run button", () => {
    assert.equal(runLabel({ running: true, step: 3, total: 9 }), "pause");
    assert.equal(runLabel({ running: false, step: 0, total: 9 }), "start");
    assert.equal(runLabel({ running: false, step: 3, total: 9 }), "resume");
    assert.equal(runLabel({ running: false, step: 9, total: 9 }), "done");
  });

  it("shows a score row with a loss arrow and a dash for no solo adapter", () => {
    assert.deepEqual(cells({ task: "code", metric: "loss", higher_is_better: false, merged: 1.23456,
      solo_adapter: null, solo: null, normalized: 0.5 }), ["code", "loss ↓", "1.235", "–", "0.50"]);
    assert.equal(fmt(NaN), "–");
  });

  it("colours a token by the expert with the largest |weight|", () => {
    assert.equal(dominant([0.1, -0.7, 0.5]), 1);
    assert.equal(dominant([0.3, 0.3]), 0);
  });
});
