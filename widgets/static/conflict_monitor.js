// ConflictMonitor view (widgets/conflict_monitor.py): losses per task, the task × task cosine
// matrix, and a layer × step heatmap of the mean task-pair cosine (blue = conflict). A click on the
// heatmap sets `selected` = [layer, step]; Python answers with that cell's cosine matrix in `matrix`
// (matrix.at names the cell it shows). Traits: losses, matrix, heatmap, selected, status, step,
// total, running.

function render({ model, el }) {
  el.classList.add("lw-conflict-monitor");
  const draw = () => {
    const selected = model.get("selected");
    const sel = selected.length === 2 ? [String(selected[0]), String(selected[1])] : null;
    const m = model.get("matrix");
    const matrix = m && m.shape ? heatmap(m, { cell: 56, digits: 2 }) : div("lw-hint", "no capture yet");
    matrix.classList.add("lw-matrix");
    const h = model.get("heatmap");
    const map = h && h.shape ? heatmap(h, {
      cell: 14, selected: sel,
      onClick: (layer, step) => {
        model.set("selected", [Number(layer), Number(step)]);
        model.save_changes();
      },
    }) : div("lw-hint", "the layer × step map fills as conflicts are captured");
    map.classList.add("lw-conflict-map");
    const top = div("lw-row-panels");
    top.append(lossChart(model.get("losses")), matrix);
    el.replaceChildren(controls(model), top, map);
  };
  const events = ["change:losses", "change:matrix", "change:heatmap", "change:selected", "change:status",
                  "change:running", "change:step"];
  for (const e of events) model.on(e, draw);
  draw();
  return () => events.forEach((e) => model.off(e, draw));
}

export default { render };
