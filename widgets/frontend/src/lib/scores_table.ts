// The merge builder's quick-evaluation table: one row per task, the merge beside its best solo adapter.

import { div } from "./dom";
import { has, type Maybe } from "./model";

export interface ScoreRow {
  task: string;
  metric: string;
  higher_is_better: boolean;
  merged: number | null;
  solo_adapter: string | null;
  solo: number | null;
  normalized: number | null;
}

/** MergeBuilder.scores: the rows, the request they were computed for, the examples per task. */
export interface Scores {
  rows: ScoreRow[];
  request: number;
  limit: number;
}

/** A number with `digits` decimals, "–" for none. */
export function fmt(v: number | null | undefined, digits = 3): string {
  return v === null || v === undefined || !Number.isFinite(v) ? "–" : Number(v).toFixed(digits);
}

/** The cells of one row, as shown: a loss metric gets "↓". */
export function cells(r: ScoreRow): string[] {
  const metricName = r.higher_is_better ? r.metric : `${r.metric} ↓`;
  return [r.task, metricName, fmt(r.merged), r.solo_adapter ? `${fmt(r.solo)} (${r.solo_adapter})` : "–",
    fmt(r.normalized, 2)];
}

const HEAD = ["task", "metric", "merged", "solo (adapter)", "normalized"];

/** The table and its note, or nothing before the first evaluation. */
export function scoresTable(s: Maybe<Scores>): HTMLElement[] {
  if (!has(s, "rows")) return [];
  const t = document.createElement("table");
  const row = (xs: string[], tag: "th" | "td") => {
    const tr = document.createElement("tr");
    for (const x of xs) {
      const c = document.createElement(tag);
      c.textContent = x;
      tr.append(c);
    }
    return tr;
  };
  t.append(row(HEAD, "th"), ...s.rows.map((r) => row(cells(r), "td")));
  const note = div("lw-hint", `normalized = merged ÷ solo (solo ÷ merged for a loss ↓); ${s.limit} examples per task`);
  return [t, note];
}
