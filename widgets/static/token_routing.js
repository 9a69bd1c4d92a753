// TokenRouting view (widgets/token_routing.py): tokens coloured by their dominant expert at the chosen
// module; hover shows every weight. Traits: tokens, modules, module, weights {values, shape, module},
// experts (labels; empty = numbered).

const PALETTE = ["#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d", "#666666",
  "#1f78b4", "#b2df8a", "#fb9a99", "#cab2d6"];

function render({ model, el }) {
  el.classList.add("lw-token-routing");
  const draw = () => {
    const labels = model.get("experts");
    const label = (i) => labels[i] ?? `expert ${i}`;
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
      span.textContent = tok.replace("Ġ", " ").replace("Ċ", "⏎");
      if (t < T) {
        const row = Array.from(values.slice(t * E, (t + 1) * E));
        const best = row.reduce((b, v, i) => (Math.abs(v) > Math.abs(row[b]) ? i : b), 0);
        span.style.background = PALETTE[best % PALETTE.length];
        span.dataset.expert = best;
        span.title = row.map((v, i) => `${label(i)}: ${v.toFixed(3)}`).join("\n");
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
  for (const e of ["change:weights", "change:module", "change:tokens", "change:experts"]) model.on(e, draw);
  draw();
}

export default { render };
