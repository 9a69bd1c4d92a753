// ScaleScatter view (widgets/prompt_scale_explorer.py): prompts in the 2-D PCA map of their σ vectors,
// coloured by task; the highlighted point is the edited prompt. Traits: points {x, y, tasks, prompts, mean},
// highlight {x, y, prompt, mean}.

const PALETTE = ["#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d", "#666666"];

const SVG = "http://www.w3.org/2000/svg";

function render({ model, el }) {
  el.classList.add("lw-scale-scatter");
  const draw = () => {
    const p = model.get("points");
    const xs = floats(p.x), ys = floats(p.y);
    const h = model.get("highlight");
    const allx = [...xs, ...(h.x !== undefined ? [h.x] : [])], ally = [...ys, ...(h.y !== undefined ? [h.y] : [])];
    const [x0, x1] = [Math.min(...allx), Math.max(...allx)], [y0, y1] = [Math.min(...ally), Math.max(...ally)];
    const W = 360, H = 260, pad = 16;
    const sx = (x) => pad + ((x - x0) / Math.max(1e-9, x1 - x0)) * (W - 2 * pad);
    const sy = (y) => H - pad - ((y - y0) / Math.max(1e-9, y1 - y0)) * (H - 2 * pad);
    const svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("width", W); svg.setAttribute("height", H);
    const tasks = [...new Set(p.tasks)];
    xs.forEach((x, i) => {
      const c = document.createElementNS(SVG, "circle");
      c.setAttribute("cx", sx(x)); c.setAttribute("cy", sy(ys[i])); c.setAttribute("r", 5);
      c.setAttribute("fill", PALETTE[tasks.indexOf(p.tasks[i]) % PALETTE.length]);
      c.setAttribute("class", "lw-point");
      const title = document.createElementNS(SVG, "title");
      title.textContent = `${p.tasks[i]}: ${p.prompts[i]} (mean σ ${p.mean[i].toFixed(3)})`;
      c.append(title);
      svg.append(c);
    });
    if (h.x !== undefined) {
      const c = document.createElementNS(SVG, "circle");
      c.setAttribute("cx", sx(h.x)); c.setAttribute("cy", sy(h.y)); c.setAttribute("r", 8);
      c.setAttribute("fill", "none"); c.setAttribute("stroke", "black"); c.setAttribute("stroke-width", 2);
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
  for (const e of ["change:points", "change:highlight"]) model.on(e, draw);
  draw();
}

export default { render };
