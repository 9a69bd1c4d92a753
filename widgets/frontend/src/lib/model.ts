// The model API a widget's view talks to: anywidget's (a Backbone model of the Python widget's synced
// traits) and, through host.ts, the Panel twin of the dashboard. `T` maps trait names to their values,
// so `model.get("selected")` has the type the Python trait declares.

/** A change or message callback; views re-read the model, so they ignore the arguments. */
export type Callback = (...args: unknown[]) => void;

/** An event a view listens to: a trait's change, or a custom message from Python. */
export type ModelEvent<T> = `change:${string & keyof T}` | "msg:custom";

export interface Model<T> {
  get<K extends keyof T>(key: K): T[K];
  /** One trait, or several at once (Backbone's `set({a, b})`); sent by `save_changes`. */
  set<K extends keyof T>(key: K, value: T[K]): void;
  set(values: Partial<T>): void;
  save_changes(): void;
  on(event: ModelEvent<T>, callback: Callback): void;
  off(event: ModelEvent<T>, callback: Callback): void;
  /** A custom message to Python (the widget's `on_msg` callbacks receive `content`). */
  send(content: unknown): void;
}

export interface RenderProps<T> {
  model: Model<T>;
  el: HTMLElement;
}

/** Draws into `el`; may return a cleanup that drops its listeners. */
export type Render<T> = (props: RenderProps<T>) => void | (() => void);

/** The binary part of a payload: ipywidgets delivers `bytes` as a DataView (Panel as an ArrayBuffer). */
export type Binary = DataView | ArrayBuffer | ArrayBufferView | null | undefined;

/** A Dict trait that is `{}` until Python fills it. */
export type Maybe<P> = P | Record<string, never>;

/** True once Python has filled a `Maybe` trait: its `key` is there and not empty. */
export function has<P extends object>(p: Maybe<P> | null | undefined, key: keyof P & string): p is P {
  return !!p && key in p && !!(p as P)[key];
}
