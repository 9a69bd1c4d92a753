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
    el.replaceChildren(...parts);
  };
  const events = ["choice", "choices", "heatmap", "aside", "selected", "detail", "cell"].map((n) => `change:${n}`);
  for (const e of events) model.on(e, draw);
  draw();
  return () => events.forEach((e) => model.off(e, draw));
}

export default { render };
