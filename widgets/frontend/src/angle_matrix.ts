// AngleMatrix view (widgets/angle_matrix.py): the adapters × adapters matrix; a click selects a pair,
// Python answers with the pair's per-module, per-layer breakdown (breakdown.pair names the pair it was
// computed for, so a breakdown for an earlier click is dimmed).

import "./styles/heatmap.css";
import { div, listen } from "./lib/dom";
import { filled, heatmap, type HeatmapPayload } from "./lib/heatmap";
import { hosted } from "./lib/host";
import type { Maybe, RenderProps } from "./lib/model";

/** AngleMatrix's synced traits. */
export interface AngleMatrixTraits {
  /** "cosine" or "degrees". */
  value: string;
  matrix: Maybe<HeatmapPayload>;
  /** The clicked pair [row, col], [] for none. */
  selected: string[];
  breakdown: Maybe<HeatmapPayload & { pair: [string, string] }>;
}

export function render({ model, el }: RenderProps<AngleMatrixTraits>) {
  el.classList.add("lw-angle-matrix");
  const draw = () => {
    const selected = model.get("selected");
    const digits = model.get("value") === "cosine" ? 2 : 0;
    const m = model.get("matrix");
    const matrix = filled(m) ? heatmap(m, {
      cell: 64, digits, selected,
      onClick: (a, b) => {
        model.set("selected", [a, b]);
        model.save_changes();
      },
    }) : div("lw-hint", "no matrix");
    matrix.classList.add("lw-matrix");
    const b = model.get("breakdown");
    let below;
    if (filled(b)) {
      below = heatmap(b, { cell: 18 });
      below.classList.add("lw-breakdown");
      const current = b.pair && b.pair[0] === selected[0] && b.pair[1] === selected[1];
      below.classList.toggle("lw-stale", !current);  // Python has not answered the new pair yet
    } else {
      below = div("lw-hint", "click a cell for that pair's breakdown per module and layer");
    }
    el.replaceChildren(matrix, below);
  };
  const stop = listen(model, ["matrix", "selected", "breakdown", "value"], draw);
  draw();
  return stop;
}

export default hosted(render);
