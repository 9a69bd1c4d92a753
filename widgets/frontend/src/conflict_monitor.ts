// ConflictMonitor view (widgets/conflict_monitor.py): losses per task, the task × task cosine matrix,
// and a layer × step heatmap of the mean task-pair cosine (blue = conflict). A click on the heatmap sets
// `selected` = [layer, step]; Python answers with that cell's cosine matrix in `matrix` (matrix.at names
// the cell it shows).

import "./styles/heatmap.css";
import "./styles/training.css";
import { div, listen } from "./lib/dom";
import { filled, heatmap, type HeatmapPayload } from "./lib/heatmap";
import { hosted } from "./lib/host";
import { controls, lossChart } from "./lib/loss_chart";
import type { Maybe, RenderProps } from "./lib/model";
import type { TrainingMonitorTraits } from "./training_monitor";

/** ConflictMonitor's synced traits (TrainingMonitor's and its own). */
export interface ConflictMonitorTraits extends TrainingMonitorTraits {
  /** ``at``: ["total", step] or [layer, step]. */
  matrix: Maybe<HeatmapPayload & { at: [string | number, number] }>;
  heatmap: Maybe<HeatmapPayload>;
  /** [layer, step], [] for the last capture in total. */
  selected: number[];
}

export function render({ model, el }: RenderProps<ConflictMonitorTraits>) {
  el.classList.add("lw-conflict-monitor");
  const draw = () => {
    const selected = model.get("selected");
    const sel = selected.length === 2 ? [String(selected[0]), String(selected[1])] : null;
    const m = model.get("matrix");
    const matrix = filled(m) ? heatmap(m, { cell: 56, digits: 2 }) : div("lw-hint", "no capture yet");
    matrix.classList.add("lw-matrix");
    const h = model.get("heatmap");
    const map = filled(h) ? heatmap(h, {
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
  const stop = listen(model, ["losses", "matrix", "heatmap", "selected", "status", "running", "step"], draw);
  draw();
  return stop;
}

export default hosted(render);
