// ModalityMap view (widgets/modality_map.py): tokens coloured by modality, then per layer one bar per
// branch (vision / language update norm).

import "./styles/heatmap.css";
import { floats } from "./lib/binary";
import { listen, tokenText } from "./lib/dom";
import { hosted } from "./lib/host";
import type { Binary, Maybe, RenderProps } from "./lib/model";

/** Σ‖Δ‖ per layer and branch: float32 (L, K) row-major. */
export interface NormsPayload {
  values: Binary;
  shape: [number, number];
  layers: (string | number)[];
  branches: string[];
}

/** ModalityMap's synced traits. */
export interface ModalityMapTraits {
  tokens: string[];
  /** 1 for a visual token, 0 for text, one per token. */
  types: number[];
  norms: Maybe<NormsPayload>;
  title: string;
}

const COLOURS: Record<string, string> = { vision: "#d95f02", language: "#1b9e77" };
const FALLBACK = ["#7570b3", "#e7298a", "#66a61e"];

export function render({ model, el }: RenderProps<ModalityMapTraits>) {
  el.classList.add("lw-modality-map");
  const draw = () => {
    const title = document.createElement("div");
    title.className = "lw-title";
    title.textContent = model.get("title");
    const strip = document.createElement("div");
    strip.className = "lw-tokens";
    const types = model.get("types");
    model.get("tokens").forEach((tok, i) => {
      const span = document.createElement("span");
      span.className = "lw-token";
      span.textContent = tokenText(tok);
      span.dataset.modality = types[i] ? "vision" : "language";
      span.style.background = types[i] ? COLOURS.vision : "#e8f4f0";
      span.style.color = types[i] ? "white" : "black";
      strip.append(span);
    });
    const n = model.get("norms");
    const [L, K] = n.shape ?? [0, 0];
    const branches = n.branches ?? [];
    const values = floats(n.values);
    const max = Math.max(1e-12, ...values);
    const chart = document.createElement("div");
    chart.className = "lw-bars";
    chart.style.display = "flex";
    chart.style.alignItems = "flex-end";
    chart.style.height = "140px";
    chart.style.gap = "3px";
    for (let l = 0; l < L; l++) {
      const group = document.createElement("div");
      group.style.display = "flex";
      group.style.alignItems = "flex-end";
      group.title = `layer ${n.layers?.[l]}: ` + branches.map((b, k) => `${b} ${values[l * K + k].toFixed(2)}`).join(", ");
      for (let k = 0; k < K; k++) {
        const bar = document.createElement("div");
        bar.className = "lw-bar";
        bar.dataset.branch = branches[k];
        bar.style.width = "6px";
        bar.style.height = `${(130 * values[l * K + k]) / max}px`;
        bar.style.background = COLOURS[branches[k]] ?? FALLBACK[k % FALLBACK.length];
        group.append(bar);
      }
      chart.append(group);
    }
    const legend = document.createElement("div");
    legend.className = "lw-hint";
    legend.textContent = `tokens: orange = visual, green = text. Bars per layer (0..${L - 1}): Σ‖Δ‖ of each branch (` +
      branches.join(" / ") + "); hover for values.";
    el.replaceChildren(title, strip, chart, legend);
  };
  const stop = listen(model, ["tokens", "types", "norms", "title"], draw);
  draw();
  return stop;
}

export default hosted(render);
