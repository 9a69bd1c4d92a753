// ScaleScatter view (widgets/prompt_scale_explorer.py): prompts in the 2-D PCA map of their σ vectors,
// coloured by task; the highlighted point is the edited prompt.

import "./styles/heatmap.css";
import { floats } from "./lib/binary";
import { listen, SVG } from "./lib/dom";
import { hosted } from "./lib/host";
import type { Binary, Maybe, RenderProps } from "./lib/model";

export interface PointsPayload {
  /** float32 (N,) each. */
  x: Binary;
  y: Binary;
  tasks: string[];
  prompts: string[];
  mean: number[];
}

export interface Highlight {
  x: number;
  y: number;
  prompt: string;
  mean: number;
}

/** ScaleScatter's synced traits. */
export interface ScaleScatterTraits {
  points: Maybe<PointsPayload>;
  highlight: Maybe<Highlight>;
}

const PALETTE = ["#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d", "#666666"];

export function render({ model, el }: RenderProps<ScaleScatterTraits>) {
  el.classList.add("lw-scale-scatter");
  const draw = () => {
    const p = model.get("points");
    const xs = floats(p.x), ys = floats(p.y);
    const ptasks = p.tasks ?? [];
    const h = model.get("highlight");
    const has = h.x !== undefined && h.y !== undefined;
    const allx = [...xs, ...(has ? [h.x!] : [])], ally = [...ys, ...(has ? [h.y!] : [])];
    const [x0, x1] = [Math.min(...allx), Math.max(...allx)], [y0, y1] = [Math.min(...ally), Math.max(...ally)];
    const W = 360, H = 260, pad = 16;
    const sx = (x: number) => pad + ((x - x0) / Math.max(1e-9, x1 - x0)) * (W - 2 * pad);
    const sy = (y: number) => H - pad - ((y - y0) / Math.max(1e-9, y1 - y0)) * (H - 2 * pad);
    const svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("width", String(W)); svg.setAttribute("height", String(H));
    const tasks = [...new Set(ptasks)];
    xs.forEach((x, i) => {
      const c = document.createElementNS(SVG, "circle");
      c.setAttribute("cx", String(sx(x))); c.setAttribute("cy", String(sy(ys[i]))); c.setAttribute("r", "5");
      c.setAttribute("fill", PALETTE[tasks.indexOf(ptasks[i]) % PALETTE.length]);
      c.setAttribute("class", "lw-point");
      const title = document.createElementNS(SVG, "title");
      title.textContent = `${ptasks[i]}: ${p.prompts?.[i]} (mean σ ${p.mean?.[i].toFixed(3)})`;
      c.append(title);
      svg.append(c);
    });
    if (has) {
      const c = document.createElementNS(SVG, "circle");
      c.setAttribute("cx", String(sx(h.x!))); c.setAttribute("cy", String(sy(h.y!))); c.setAttribute("r", "8");
      c.setAttribute("fill", "none"); c.setAttribute("stroke", "black"); c.setAttribute("stroke-width", "2");
      c.setAttribute("class", "lw-highlight");
      svg.append(c);
    }
    const legend = document.createElement("div");
    legend.className = "lw-hint lw-legend";
    tasks.forEach((t, i) => {
      const key = document.createElement("span");
      key.className = "lw-token";
      key.style.background = PALETTE[i % PALETTE.length];
      key.style.color = "white";
      key.textContent = t;
      legend.append(key);
    });
    legend.append(" · ringed: the prompt in the box. Axes: the first two principal components of σ.");
    el.replaceChildren(svg, legend);
  };
  const stop = listen(model, ["points", "highlight"], draw);
  draw();
  return stop;
}

export default hosted(render);
