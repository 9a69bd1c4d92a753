// AngleMatrix view (widgets/angle_matrix.py): the adapters × adapters matrix; a click selects a pair,
// Python answers with the pair's per-module, per-layer breakdown. Traits: value, matrix, selected,
// breakdown (payloads as in heatmap.js; breakdown.pair names the pair it was computed for).

function render({ model, el }) {
  el.classList.add("lw-angle-matrix");
  const draw = () => {
    const selected = model.get("selected");
    const digits = model.get("value") === "cosine" ? 2 : 0;
    const matrix = heatmap(model.get("matrix"), {
      cell: 64, digits, selected,
      onClick: (a, b) => {
        model.set("selected", [a, b]);
        model.save_changes();
      },
    });
    matrix.classList.add("lw-matrix");
    const b = model.get("breakdown");
    let below;
    if (b && b.shape) {
      below = heatmap(b, { cell: 18 });
      below.classList.add("lw-breakdown");
      const current = b.pair && b.pair[0] === selected[0] && b.pair[1] === selected[1];
      below.classList.toggle("lw-stale", !current);  // Python has not answered the new pair yet
    } else {
      below = div("lw-hint", "click a cell for that pair's breakdown per module and layer");
    }
    el.replaceChildren(matrix, below);
  };
  const events = ["change:matrix", "change:selected", "change:breakdown", "change:value"];
  for (const e of events) model.on(e, draw);
  draw();
  return () => events.forEach((e) => model.off(e, draw));
}

export default { render };
