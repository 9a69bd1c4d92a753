// TokenRouting view (widgets/token_routing.py): tokens coloured by their dominant expert at the chosen
// module; hover shows every weight.

import "./styles/heatmap.css";
import { floats } from "./lib/binary";
import { listen, tokenText } from "./lib/dom";
import { hosted } from "./lib/host";
import type { Binary, Maybe, RenderProps } from "./lib/model";

/** The gate weights of one module: float32 (T, E) row-major. */
export interface WeightsPayload {
  values: Binary;
  shape: [number, number];
  module: string;
}

/** TokenRouting's synced traits. */
export interface TokenRoutingTraits {
  tokens: string[];
  modules: string[];
  module: string;
  weights: Maybe<WeightsPayload>;
  /** A label per expert; empty = numbered. */
  experts: string[];
}

const PALETTE = ["#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d", "#666666",
  "#1f78b4", "#b2df8a", "#fb9a99", "#cab2d6"];

/** The index of the largest |weight| (the first on ties). */
export function dominant(row: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < row.length; i++) if (Math.abs(row[i]) > Math.abs(row[best])) best = i;
  return best;
}

export function render({ model, el }: RenderProps<TokenRoutingTraits>) {
  el.classList.add("lw-token-routing");
  const draw = () => {
    const labels = model.get("experts");
    const label = (i: number) => labels[i] ?? `expert ${i}`;
    const select = document.createElement("select");
    select.className = "lw-select";
    for (const m of model.get("modules")) {
      const o = document.createElement("option");
      o.value = o.textContent = m;
      o.selected = m === model.get("module");
      select.append(o);
    }
    select.addEventListener("change", () => { model.set("module", select.value); model.save_changes(); });
    const w = model.get("weights");
    const [T, E] = w.shape ?? [0, 0];
    const values = floats(w.values);
    const text = document.createElement("div");
    text.className = "lw-tokens" + (w.module !== model.get("module") ? " lw-stale" : "");
    model.get("tokens").forEach((tok, t) => {
      const span = document.createElement("span");
      span.className = "lw-token";
      span.textContent = tokenText(tok);
      if (t < T) {
        const row = values.subarray(t * E, (t + 1) * E);
        const best = dominant(row);
        span.style.background = PALETTE[best % PALETTE.length];
        span.dataset.expert = String(best);
        span.title = Array.from(row, (v, i) => `${label(i)}: ${v.toFixed(3)}`).join("\n");
      }
      text.append(span);
    });
    const keys = document.createElement("div");
    keys.className = "lw-hint lw-legend";
    keys.append(`colour = the expert with the largest gate weight; hover a token for all ${E} weights: `);
    for (let i = 0; i < E && i < PALETTE.length; i++) {
      const key = document.createElement("span");
      key.className = "lw-token";
      key.style.background = PALETTE[i];
      key.textContent = label(i);
      keys.append(key);
    }
    el.replaceChildren(select, text, keys);
  };
  const stop = listen(model, ["weights", "module", "tokens", "experts"], draw);
  draw();
  return stop;
}

export default hosted(render);
