// A heatmap chosen with buttons (widgets/_chooser.py): a click on a choice sets `choice`; Python answers
// with `heatmap` (tagged with the choice it was computed for, so a stale map is dimmed), and an optional
// `aside` heatmap that does not depend on the choice. `selected` is the last clicked cell [row, col].

function render({ model, el }) {
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
    const h = model.get("heatmap");
    const parts = [buttons];
    if (h && h.shape) {
      const map = heatmap(h, {
        cell: model.get("cell"), selected: model.get("selected"),
        onClick: (r, c) => { model.set("selected", [r, c]); model.save_changes(); },
      });
      map.classList.add("lw-main");
      map.classList.toggle("lw-stale", h.choice !== current);
      parts.push(map);
    } else {
      parts.push(div("lw-hint", "computing…"));
    }
    if (model.get("detail")) parts.push(div("lw-status", model.get("detail")));
    const aside = model.get("aside");
    if (aside && aside.shape) parts.push(heatmap(aside, { cell: 48, digits: 2 }));
    const curve = model.get("curve");
    if (curve && curve.x && curve.x.length) parts.push(lines(curve));
    el.replaceChildren(...parts);
  };
  const events = ["choice", "choices", "heatmap", "aside", "selected", "detail", "cell", "curve"]
    .map((n) => `change:${n}`);
  for (const e of events) model.on(e, draw);
  draw();
  return () => events.forEach((e) => model.off(e, draw));
}

// A small line chart: curve = {title, x: [...], series: {name: [...]}}, one polyline per series.
const COLOURS = ["#54278f", "#d95f02", "#1b9e77", "#e7298a", "#666666"];
function lines(curve) {
  const W = 420, H = 140, pad = 36;
  const all = Object.values(curve.series).flat().filter(Number.isFinite);
  const lo = Math.min(...all), hi = Math.max(...all);
  const x0 = Math.min(...curve.x), x1 = Math.max(...curve.x);
  const sx = (x) => pad + ((x - x0) / ((x1 - x0) || 1)) * (W - pad - 8);
  const sy = (y) => H - 18 - ((y - lo) / ((hi - lo) || 1)) * (H - 36);
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("width", W); svg.setAttribute("height", H); svg.classList.add("lw-curve");
  const text = (x, y, s, anchor = "start") => {
    const t = document.createElementNS(ns, "text");
    t.setAttribute("x", x); t.setAttribute("y", y); t.setAttribute("font-size", "10");
    t.setAttribute("text-anchor", anchor); t.textContent = s; svg.append(t);
  };
  Object.entries(curve.series).forEach(([name, ys], i) => {
    const line = document.createElementNS(ns, "polyline");
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

export default { render };
