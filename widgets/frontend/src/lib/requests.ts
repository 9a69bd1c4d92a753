// The request / answered protocol of a view whose Python side computes slowly (the merge builder).
//
// The view owns the settings while the user moves controls: each change marks them `dirty` and
// (re)starts a debounce; when it runs out the settings go to Python in one `save_changes` together with
// `request` + 1. One request is in flight at a time (`answered < request`): a debounce that runs out
// meanwhile is `queued` and sent when the answer arrives, so Python computes the latest settings, not
// every intermediate one. With `overlap` (a Python side that computes in the background and cancels the
// request it computes when a newer one arrives: the merge builder) the newer request goes out at once. Python answers by setting the previews, then `answered` = the request it
// computed, and `status` ("current", or what went wrong). A preview is current only when nothing is
// dirty, nothing is in flight and the status says "current"; otherwise the view dims and labels it.

import type { Model } from "./model";

export const DEBOUNCE_MS = 300;

/** The traits the protocol reads and writes. */
export interface RequestTraits {
  /** The number of the latest settings sent (the view increments it). */
  request: number;
  /** The request whose previews are shown (Python sets it after the previews). */
  answered: number;
  status: string;
}

export class Requests<T extends RequestTraits> {
  /** Local control changes not yet sent. */
  dirty = false;
  /** The debounce ran out while a request was in flight: send on its answer. */
  queued = false;
  private timer: ReturnType<typeof setTimeout> | undefined;

  /**
   * @param model the widget's model.
   * @param settings what the controls show now, as trait values.
   * @param redraw called whenever the state of the protocol changed (to restyle the previews).
   */
  constructor(private model: Model<T>, private settings: () => Partial<T>, private redraw: () => void,
    private debounceMs = DEBOUNCE_MS, private overlap = false) {}

  /** A request is in flight: sent, not yet answered. */
  inFlight(): boolean {
    return this.model.get("answered") < this.model.get("request");
  }

  /** The previews shown belong to the settings the controls show. */
  current(): boolean {
    return !this.dirty && !this.inFlight() && this.model.get("status") === "current";
  }

  /** Waiting for an answer (or for the debounce): the previews are stale. */
  waiting(): boolean {
    return this.dirty || this.inFlight();
  }

  /** A control moved: send its settings after `delay` ms without another change. */
  changed(delay = this.debounceMs): void {
    this.dirty = true;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.flush(), delay);
    this.redraw();
  }

  /** Send the dirty settings now as the next request, unless one is in flight (then queue; `force` or
   * `overlap`: send). */
  flush(force = false): void {
    clearTimeout(this.timer);
    if (!this.dirty) return;
    if (this.inFlight() && !force && !this.overlap) {
      this.queued = true;
      return;
    }
    this.queued = this.dirty = false;
    const request = (this.model.get("request") + 1) as T["request"];
    this.model.set({ ...this.settings(), request, status: "computing…" } as Partial<T>);
    this.model.save_changes();
    this.redraw();
  }

  /** Python answered (`answered` changed): send what waited for it, then restyle. */
  answered(): void {
    if (this.queued) this.flush();
    this.redraw();
  }

  /** Before an action that applies to the settings shown: send them now (or just the pending `set`s). */
  settle(): void {
    if (this.dirty) this.flush(true);
    else this.model.save_changes();
  }

  dispose(): void {
    clearTimeout(this.timer);
  }
}
