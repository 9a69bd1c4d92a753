// TrainingMonitor view (widgets/training_monitor.py): loss curves, a status line and pause/resume.
// Traits: losses (payload, see loss_chart.js), status, step, total, running.

function render({ model, el }) {
  el.classList.add("lw-training-monitor");
  const draw = () => el.replaceChildren(controls(model), lossChart(model.get("losses")));
  const events = ["change:losses", "change:status", "change:running", "change:step"];
  for (const e of events) model.on(e, draw);
  draw();
  return () => events.forEach((e) => model.off(e, draw));
}

export default { render };
