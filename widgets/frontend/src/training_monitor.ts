// TrainingMonitor view (widgets/training_monitor.py): loss curves, a status line and pause/resume.

import "./styles/heatmap.css";
import "./styles/training.css";
import { listen } from "./lib/dom";
import { hosted } from "./lib/host";
import { controls, lossChart, type LossesPayload, type RunTraits } from "./lib/loss_chart";
import type { Maybe, RenderProps } from "./lib/model";

/** TrainingMonitor's synced traits. */
export interface TrainingMonitorTraits extends RunTraits {
  losses: Maybe<LossesPayload>;
}

export function render({ model, el }: RenderProps<TrainingMonitorTraits>) {
  el.classList.add("lw-training-monitor");
  const draw = () => el.replaceChildren(controls(model), lossChart(model.get("losses")));
  const stop = listen(model, ["losses", "status", "running", "step"], draw);
  draw();
  return stop;
}

export default hosted(render);
