// A test double of the browser's model API (anywidget's Backbone model): get / set / save_changes /
// on / off / send, with Backbone's semantics where the views depend on them: `set` changes the value at
// once and fires `change:<name>` only for a value that differs; `save_changes` sends what was set since
// the last one. `python(...)` plays the kernel: an update from Python, applied and then announced.

import { isDeepStrictEqual } from "node:util";
import type { Callback, Model, ModelEvent } from "../src/lib/model";

export class FakeModel<T extends object> implements Model<T> {
  /** Each `save_changes`: the traits it sent to Python. */
  saved: Partial<T>[] = [];
  /** Each `send`: the message and how many saves preceded it. */
  sent: { content: unknown; afterSaves: number }[] = [];
  private pending: Partial<T> = {};
  private listeners = new Map<string, Set<Callback>>();

  constructor(public state: T) {}

  get<K extends keyof T>(key: K): T[K] {
    return this.state[key];
  }

  set<K extends keyof T>(key: K | Partial<T>, value?: T[K]): void {
    const changes = (typeof key === "object" ? key : { [key]: value }) as Partial<T>;
    Object.assign(this.pending, changes);
    this.apply(changes);
  }

  save_changes(): void {
    this.saved.push(this.pending);
    this.pending = {};
  }

  on(event: ModelEvent<T>, callback: Callback): void {
    if (!this.listeners.has(event)) this.listeners.set(event, new Set());
    this.listeners.get(event)!.add(callback);
  }

  off(event: ModelEvent<T>, callback: Callback): void {
    this.listeners.get(event)?.delete(callback);
  }

  send(content: unknown): void {
    this.sent.push({ content, afterSaves: this.saved.length });
  }

  /** What Python sends (one `hold_sync` block): every value set, then each change announced. */
  python(changes: Partial<T>): void {
    this.apply(changes);
  }

  /** How many callbacks listen now (to check a view's cleanup). */
  listening(): number {
    return [...this.listeners.values()].reduce((n, s) => n + s.size, 0);
  }

  private apply(changes: Partial<T>): void {
    const changed = Object.keys(changes).filter((k) =>
      !isDeepStrictEqual(this.state[k as keyof T], changes[k as keyof T]));
    Object.assign(this.state, changes);
    for (const k of changed) for (const cb of [...(this.listeners.get(`change:${k}`) ?? [])]) cb();
  }
}
