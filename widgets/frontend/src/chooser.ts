// A heatmap chosen with buttons (widgets/_chooser.py: RankActivations, ExpertLoad): a click on a choice
// sets `choice`; Python answers with `heatmap` (tagged with the choice it was computed for, so a stale
// map is dimmed), and an optional `aside` heatmap that does not depend on the choice. `selected` is the
// last clicked cell [row, col]. When `options` is not empty a select beside the buttons sets `option` (a
// second choice, e.g. the layer); the map is then tagged with the option too.

import "./styles/heatmap.css";
import { div, listen, option as item, SVG } from "./lib/dom";
import { filled, heatmap, type HeatmapPayload } from "./lib/heatmap";
import { hosted } from "./lib/host";
import { has, type Maybe, type RenderProps } from "./lib/model";

/** A small line chart under the map: one polyline per series. */
export interface Curve {
  title: string;
  x: number[];
  series: Record<string, number[]>;
}

/** Chooser's synced traits. */
export interface ChooserTraits {
  choices: string[];
  choice: string;
  options: string[];
  option: string;
  heatmap: Maybe<HeatmapPayload & { choice: string; option?: string }>;
  aside: Maybe<HeatmapPayload>;
  selected: string[];
  detail: string;
  cell: number;
  curve: Maybe<Curve>;
}

export function render({ model, el }: RenderProps<ChooserTraits>) {
  el.classList.add("lw-chooser");
  const draw = () => {
    const current = model.get("choice");
    const buttons = div("lw-buttons");
    for (const c of model.get("choices")) {
      const b = document.createElement("button");
      b.textContent = c;
      b.className = "lw-button" + (c === current ? " lw-on" : "");
      b.addEventListener("click", () => { model.set("choice", c); model.save_changes(); });
      buttons.append(b);
    }
    const options = model.get("options") ?? [];
    const picked = model.get("option") ?? "";
    if (options.length) {
      const select = document.createElement("select");
      select.className = "lw-select lw-option";
      for (const o of options) {
        const entry = item(o, o);
        entry.selected = o === picked;
        select.append(entry);
      }
      select.addEventListener("change", () => { model.set("option", select.value); model.save_changes(); });
      buttons.append(select);
    }
    const h = model.get("heatmap");
    const parts: HTMLElement[] = [buttons];
    if (filled(h)) {
      const cell = model.get("cell");
      const map = heatmap(h, {
        cell, selected: model.get("selected"), digits: cell >= 40 ? 2 : null, // numbers when they fit
        onClick: (r, c) => { model.set("selected", [r, c]); model.save_changes(); },
      });
      map.classList.add("lw-main");
      map.classList.toggle("lw-stale", h.choice !== current || (options.length > 0 && h.option !== picked));
      parts.push(map);
    } else {
      parts.push(div("lw-hint", "computing…"));
    }
    if (model.get("detail")) parts.push(div("lw-status", model.get("detail")));
    const aside = model.get("aside");
    if (filled(aside)) parts.push(heatmap(aside, { cell: 48, digits: 2 }));
    const curve = model.get("curve");
    if (has(curve, "x") && curve.x.length) parts.push(lines(curve));
    el.replaceChildren(...parts);
  };
  const stop = listen(model, ["choice", "choices", "option", "options", "heatmap", "aside", "selected", "detail", "cell", "curve"],
    draw);
  draw();
  return stop;
}

const COLOURS = ["#54278f", "#d95f02", "#1b9e77", "#e7298a", "#666666"];

function lines(curve: Curve): HTMLElement {
  const W = 420, H = 140, pad = 36;
  const all = Object.values(curve.series).flat().filter(Number.isFinite);
  const lo = Math.min(...all), hi = Math.max(...all);
  const x0 = Math.min(...curve.x), x1 = Math.max(...curve.x);
  const sx = (x: number) => pad + ((x - x0) / ((x1 - x0) || 1)) * (W - pad - 8);
  const sy = (y: number) => H - 18 - ((y - lo) / ((hi - lo) || 1)) * (H - 36);
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("width", String(W)); svg.setAttribute("height", String(H)); svg.classList.add("lw-curve");
  const text = (x: number, y: number, s: string, anchor = "start") => {
    const t = document.createElementNS(SVG, "text");
    t.setAttribute("x", String(x)); t.setAttribute("y", String(y)); t.setAttribute("font-size", "10");
    t.setAttribute("text-anchor", anchor); t.textContent = s; svg.append(t);
  };
  Object.entries(curve.series).forEach(([name, ys], i) => {
    const line = document.createElementNS(SVG, "polyline");
    line.setAttribute("points", ys.map((y, j) => `${sx(curve.x[j])},${sy(y)}`).join(" "));
    line.setAttribute("fill", "none"); line.setAttribute("stroke", COLOURS[i % COLOURS.length]);
    line.dataset.series = name;
    svg.append(line);
    text(W - 8, 12 + 12 * i, name, "end");
  });
  text(2, sy(hi) + 4, hi.toPrecision(3)); text(2, sy(lo), lo.toPrecision(3));
  text(pad, H - 4, `step ${x0}`); text(W - 8, H - 4, `${x1}`, "end");
  const box = div("lw-heatmap");
  box.append(div("lw-title", curve.title), svg);
  return box;
}

export default hosted(render);
