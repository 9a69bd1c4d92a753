// QLadderAttention view (widgets/qladder_attention.py): the image, and one rung's attention upsampled
// over it.

import "./styles/heatmap.css";
import { floats, typed } from "./lib/binary";
import { listen } from "./lib/dom";
import { hosted } from "./lib/host";
import type { Binary, Maybe, RenderProps } from "./lib/model";

/** {values, shape}: uint8 grey pixels (image) or float32 weights (attention), (H, W) row-major. */
export interface Grid {
  values: Binary;
  shape: [number, number];
}

/** QLadderAttention's synced traits. */
export interface QLadderAttentionTraits {
  image: Maybe<Grid>;
  stages: string[];
  stage: number;
  /** A query's index, or -1 for the mean over queries. */
  query: number;
  n_queries: number;
  attention: Maybe<Grid>;
}

function paint(canvas: HTMLCanvasElement, [h, w]: [number, number], pixel: (i: number) => string) {
  const size = 192;
  canvas.width = canvas.height = size;
  const ctx = canvas.getContext("2d");
  if (!ctx) return;
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) {
    ctx.fillStyle = pixel(y * w + x);
    ctx.fillRect((x * size) / w, (y * size) / h, Math.ceil(size / w), Math.ceil(size / h));
  }
}

export function render({ model, el }: RenderProps<QLadderAttentionTraits>) {
  el.classList.add("lw-qladder");
  const draw = () => {
    const stage = document.createElement("select");
    stage.className = "lw-select";
    model.get("stages").forEach((s, i) => {
      const o = document.createElement("option");
      o.value = String(i); o.textContent = s; o.selected = i === model.get("stage");
      stage.append(o);
    });
    stage.addEventListener("change", () => { model.set("stage", Number(stage.value)); model.save_changes(); });
    const query = document.createElement("select");
    query.className = "lw-select";
    for (let q = -1; q < model.get("n_queries"); q++) {
      const o = document.createElement("option");
      o.value = String(q); o.textContent = q < 0 ? "all queries (mean)" : `query ${q}`;
      o.selected = q === model.get("query");
      query.append(o);
    }
    query.addEventListener("change", () => { model.set("query", Number(query.value)); model.save_changes(); });
    const img = model.get("image");
    const pixels = typed(img.values, Uint8Array);
    const left = document.createElement("canvas");
    paint(left, img.shape ?? [0, 0], (i) => `rgb(${pixels[i]},${pixels[i]},${pixels[i]})`);
    const a = model.get("attention");
    const values = floats(a.values);
    const max = Math.max(1e-12, ...values);
    const right = document.createElement("canvas");
    right.className = "lw-attention";
    paint(right, a.shape ?? [0, 0], (i) => `rgba(217,95,2,${(values[i] / max).toFixed(3)})`);
    const row = document.createElement("div");
    row.style.display = "flex";
    row.style.gap = "8px";
    row.append(left, right);
    const hint = document.createElement("div");
    hint.className = "lw-hint";
    hint.textContent = "left: the image; right: where the ladder queries attend at this rung (darker = more).";
    el.replaceChildren(stage, query, row, hint);
  };
  const stop = listen(model, ["image", "attention", "stages", "n_queries"], draw);
  draw();
  return stop;
}

export default hosted(render);
