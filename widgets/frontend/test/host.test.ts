// One module, two hosts (src/lib/host.ts): anywidget's model passes through untouched; Panel's adapter
// gets renamed traits, Backbone's object `set`, and `send` carried by the `lw_msg` parameter.

import assert from "node:assert/strict";
import { readdirSync } from "node:fs";
import { describe, it } from "node:test";
import { fromPanel, hosted, MESSAGE, RENAME, type PanelModel } from "../src/lib/host";
import type { Model } from "../src/lib/model";
import { FakeModel } from "./fake_model";

/** Panel's AnyWidgetModelAdapter: string `set` only, no `send`, parameters under their Panel names. */
class FakePanel implements PanelModel {
  events: string[] = [];
  saves = 0;
  constructor(public params: Record<string, unknown>) {}
  get(key: string) { return this.params[key]; }
  set(key: string, value: unknown) { this.params[key] = value; }
  save_changes() { this.saves++; }
  on(event: string) { this.events.push(`on ${event}`); }
  off(event: string) { this.events.push(`off ${event}`); }
}

interface Traits { name: string; seed: number }

describe("host", () => {
  it("hands anywidget's model to the view as it is", () => {
    const model = new FakeModel<Traits>({ name: "merged", seed: 0 });
    let seen: Model<Traits> | null = null;
    hosted<Traits>(({ model: m }) => { seen = m; }).render({ model, el: {} as HTMLElement });
    assert.equal(seen, model);
  });

  it("adapts a twin's model, marked by lw_rename", () => {
    const panel = new FakePanel({ [RENAME]: {}, seed: 4 });
    let seen: Model<Traits> | null = null;
    hosted<Traits>(({ model: m }) => { seen = m; }).render({ model: panel, el: {} as HTMLElement });
    assert.notEqual(seen, panel);
    assert.equal(seen!.get("seed"), 4);
    assert.equal(typeof seen!.send, "function");
  });

  it("renames the traits Panel reserves, both ways, and sets several at once", () => {
    const panel = new FakePanel({ [RENAME]: { name: "w_name" }, w_name: "merged", seed: 0 });
    const model = fromPanel<Traits>(panel);
    assert.equal(model.get("name"), "merged");
    model.set({ name: "mix", seed: 3 });
    model.save_changes();
    assert.deepEqual([panel.params.w_name, panel.params.seed, panel.saves], ["mix", 3, 1]);
    const cb = () => {};
    model.on("change:name", cb);
    model.off("change:seed", cb);
    assert.deepEqual(panel.events, ["on change:w_name", "off change:seed"]);
  });

  it("carries send as a numbered lw_msg, so that two equal messages are two changes", () => {
    const panel = new FakePanel({ [RENAME]: {} });
    const model = fromPanel<Traits>(panel);
    model.send({ action: "commit" });
    const first = panel.params[MESSAGE] as { n: number; msg: unknown };
    model.send({ action: "commit" });
    const second = panel.params[MESSAGE] as { n: number; msg: unknown };
    assert.deepEqual(second.msg, { action: "commit" });
    assert.equal(second.n, first.n + 1);
    assert.equal(panel.saves, 2);
  });

  it("is the default export of every widget module", async () => {
    const src = new URL("../src/", import.meta.url); // from .test-build/
    const entries = readdirSync(src).filter((f) => f.endsWith(".ts") && !f.endsWith(".d.ts"));
    assert.ok(entries.length >= 10, `widget modules in ${src}: ${entries}`);
    const modules = await Promise.all(entries.map((f) => import(`../src/${f}`)));
    for (const [i, m] of modules.entries()) assert.equal(m.default.hosted, true, entries[i]);
  });
});
