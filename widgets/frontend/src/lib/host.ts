// One module, two hosts. In a notebook anywidget hands `render` a Backbone model; in the dashboard
// (widgets/dashboard.py) Panel's AnyWidgetComponent hands it an adapter without `send`, without the
// object form of `set`, and whose parameters are renamed where a trait name clashes with one of Panel's
// (`name` -> `w_name`). `hosted(render)` gives the view the anywidget API in both: the twin's
// parameters `lw_rename` (trait -> parameter; its presence marks a twin) and `lw_msg` (the latest
// message, numbered) carry what Panel lacks. Every widget module's default export is `hosted(render)`.

import type { Callback, Model, Render, RenderProps } from "./model";

/** The Panel parameter that carries `model.send(msg)` to Python, as `{n, msg}` (see dashboard.py). */
export const MESSAGE = "lw_msg";
/** The Panel parameter that maps a trait name to its parameter name where Panel reserves the name. */
export const RENAME = "lw_rename";

/** What Panel's adapter offers (models/anywidget_component.ts in panel 1.9). */
export interface PanelModel {
  get(key: string): unknown;
  set(key: string, value: unknown): void;
  save_changes(): void;
  on(event: string, callback: Callback): void;
  off(event: string, callback: Callback): void;
}

// Module-wide, so that a view rendered again never repeats the number of the last message (an equal
// parameter value would not reach Python).
let sent = 0;

/** Panel's adapter seen through anywidget's model API. */
export function fromPanel<T>(model: PanelModel): Model<T> {
  const rename = (model.get(RENAME) ?? {}) as Record<string, string>;
  const key = (k: string): string => rename[k] ?? k;
  const event = (e: string): string => (e.startsWith("change:") ? "change:" + key(e.slice(7)) : e);
  function set(k: string | Partial<T>, v?: unknown): void {
    if (typeof k === "object") {
      for (const [name, value] of Object.entries(k)) model.set(key(name), value);
    } else {
      model.set(key(k), v);
    }
  }
  return {
    get: (k) => model.get(key(String(k))) as never,
    set: set as Model<T>["set"],
    save_changes: () => model.save_changes(),
    on: (e, cb) => model.on(event(e), cb),
    off: (e, cb) => model.off(event(e), cb),
    send: (msg) => {
      model.set(MESSAGE, { n: ++sent, msg });
      model.save_changes();
    },
  };
}

/** True for a dashboard twin (it declares `lw_rename`), false for anywidget's model. */
function isTwin<T>(model: Model<T> | PanelModel): model is PanelModel {
  return (model as PanelModel).get(RENAME) !== undefined;
}

/** The default export of a widget module: `render` behind the host adaptation. */
export interface WidgetModule<T> {
  render: (props: { model: Model<T> | PanelModel; el: HTMLElement }) => ReturnType<Render<T>>;
  hosted: true;
}

export function hosted<T>(render: Render<T>): WidgetModule<T> {
  return {
    render: ({ model, el }) => {
      const props: RenderProps<T> = { model: isTwin(model) ? fromPanel<T>(model) : model, el };
      return render(props);
    },
    hosted: true,
  };
}
