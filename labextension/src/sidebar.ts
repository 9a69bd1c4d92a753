// The "LoRA Workbench" left panel: the workbench sessions in the kernel of the active notebook.
// It asks only that kernel (kernel.ts), after each executed cell, on a kernel change or restart,
// and when the panel is shown; selecting adapters enables the actions of actions.ts.

import { ISessionContext } from '@jupyterlab/apputils';
import { INotebookTracker, NotebookActions, NotebookPanel } from '@jupyterlab/notebook';
import { Kernel } from '@jupyterlab/services';
import { Message } from '@lumino/messaging';
import { Widget } from '@lumino/widgets';

import { ACTIONS, IAction, insertAndRun, ROUTER_ACTIONS } from './actions';
import { querySessions } from './kernel';
import { IAdapterInfo, IRouterInfo, ISessionInfo, IWorkbenchInfo } from './tokens';

const WAITING = new Set(['starting', 'restarting', 'autorestarting', 'unknown']);

/** What the panel knows about the current notebook's kernel. */
type State =
  | { kind: 'no-notebook' }
  | { kind: 'no-kernel' }
  | { kind: 'asking' }
  | { kind: 'error'; message: string }
  | { kind: 'info'; info: IWorkbenchInfo | null };

function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  className = '',
  text = ''
): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  if (className) {
    e.className = className;
  }
  if (text) {
    e.textContent = text;
  }
  return e;
}

export function formatCount(n: number): string {
  if (n >= 1e9) return `${(n / 1e9).toFixed(2)}B`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(1)}M`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)}k`;
  return `${n}`;
}

export function formatBytes(n: number): string {
  if (n >= 2 ** 30) return `${(n / 2 ** 30).toFixed(2)} GiB`;
  if (n >= 2 ** 20) return `${(n / 2 ** 20).toFixed(1)} MiB`;
  if (n >= 2 ** 10) return `${(n / 2 ** 10).toFixed(1)} KiB`;
  return `${n} B`;
}

export class WorkbenchSidebar extends Widget {
  constructor(
    private readonly _tracker: INotebookTracker,
    private readonly _run: (action: IAction) => void
  ) {
    super();
    this.id = 'lora-workbench-sidebar';
    this.addClass('jp-LoraWorkbench');
    this.title.caption = 'LoRA Workbench';
    this._tracker.currentChanged.connect(this._onNotebook, this);
    NotebookActions.executed.connect(this._onExecuted, this);
    this._onNotebook();
  }

  /** The notebook the panel describes (the last one focused). */
  get notebook(): NotebookPanel | null {
    return this._panel;
  }

  /** The session the user selected adapters in, with those names (in the lab's order). */
  get selection(): { session: ISessionInfo; names: string[] } | null {
    const sessions = this._state.kind === 'info' ? this._state.info?.sessions ?? [] : [];
    for (const session of sessions) {
      const chosen = this._selected.get(session.variables[0]);
      const names = session.adapters.map(a => a.name).filter(n => chosen?.has(n));
      if (names.length) {
        return { session, names };
      }
    }
    return null;
  }

  /** Ask the kernel again (one request at a time; a request made meanwhile runs after it). */
  async refresh(): Promise<void> {
    if (this._busy) {
      this._again = true;
      return;
    }
    this._busy = true;
    try {
      do {
        this._again = false;
        await this._ask();
      } while (this._again);
    } finally {
      this._busy = false;
    }
  }

  dispose(): void {
    NotebookActions.executed.disconnect(this._onExecuted, this);
    super.dispose();
  }

  protected onAfterShow(msg: Message): void {
    if (this._stale) {
      void this.refresh();
    }
  }

  private _onNotebook(): void {
    const panel = this._tracker.currentWidget;
    if (panel === this._panel) {
      return;
    }
    if (this._panel) {
      this._panel.sessionContext.kernelChanged.disconnect(this._onKernel, this);
      this._panel.sessionContext.statusChanged.disconnect(this._onStatus, this);
    }
    this._panel = panel;
    this._selected.clear();
    this._state = { kind: panel ? 'asking' : 'no-notebook' }; // never the last notebook's sessions
    if (panel) {
      panel.sessionContext.kernelChanged.connect(this._onKernel, this);
      panel.sessionContext.statusChanged.connect(this._onStatus, this);
      void panel.sessionContext.ready.then(() => this._request());
    }
    this._request();
  }

  private _onExecuted(_: unknown, args: { notebook: unknown }): void {
    if (this._panel && args.notebook === this._panel.content) {
      this._request();
    }
  }

  private _onKernel(): void {
    this._selected.clear();
    this._request();
  }

  private _onStatus(_: ISessionContext, status: Kernel.Status): void {
    // Only leaving a (re)start triggers a query: our own silent request makes busy -> idle too.
    if (status === 'idle' && WAITING.has(this._lastStatus)) {
      this._request();
    } else if (status === 'restarting' || status === 'autorestarting' || status === 'dead') {
      this._selected.clear();
      this._set({ kind: 'no-kernel' });
    }
    this._lastStatus = status;
  }

  /** Refresh now when visible, else when next shown. */
  private _request(): void {
    this._stale = true;
    if (this.isVisible) {
      void this.refresh();
    }
  }

  private async _ask(): Promise<void> {
    this._stale = false;
    const panel = this._panel;
    if (!panel) {
      return this._set({ kind: 'no-notebook' });
    }
    const kernel = panel.sessionContext.session?.kernel;
    if (!kernel || kernel.status === 'dead') {
      return this._set({ kind: 'no-kernel' });
    }
    if (this._state.kind !== 'info') {
      this._set({ kind: 'asking' });
    }
    try {
      const info = await querySessions(kernel);
      if (panel === this._panel) {
        this._set({ kind: 'info', info });
      }
    } catch (e) {
      if (panel === this._panel) {
        this._set({ kind: 'error', message: (e as Error).message });
      }
    }
  }

  private _set(state: State): void {
    this._state = state;
    this._render();
  }

  private _render(): void {
    const root = this.node;
    root.replaceChildren();
    const head = el('div', 'jp-LoraWorkbench-header');
    head.append(el('h2', '', 'LoRA Workbench'));
    const again = el('button', 'jp-LoraWorkbench-refresh jp-mod-styled', '↻');
    again.title = 'Ask the kernel again';
    again.onclick = () => void this.refresh();
    head.append(again);
    root.append(head);
    if (this._panel) {
      root.append(el('div', 'jp-LoraWorkbench-notebook', this._panel.context.path));
    }
    const s = this._state;
    root.dataset.state = s.kind;
    if (s.kind === 'no-notebook') {
      root.append(this._hint('Open a notebook: this panel lists the workbench sessions in its kernel.'));
    } else if (s.kind === 'no-kernel') {
      root.append(this._hint('This notebook has no running kernel. Start one to see its workbench.'));
    } else if (s.kind === 'asking') {
      root.append(this._hint('Asking the kernel… (it answers when the running cell is done)'));
    } else if (s.kind === 'error') {
      const box = this._hint(`The kernel could not describe its workbench: ${s.message}`);
      box.classList.add('jp-LoraWorkbench-error');
      root.append(box);
    } else if (!s.info || s.info.sessions.length === 0) {
      const box = this._hint(
        s.info
          ? 'workbench is imported, but no Workbench is bound to a name in this kernel yet. Make one:'
          : 'No workbench in this kernel. Create one in a cell:'
      );
      box.append(el('pre', '', 'import workbench as wb\nlab = wb.Workbench.from_zoo("smollm2-135m")'));
      box.classList.add('jp-LoraWorkbench-empty');
      root.append(box);
    } else {
      for (const session of s.info.sessions) {
        root.append(this._session(session));
      }
    }
  }

  private _hint(text: string): HTMLElement {
    return el('div', 'jp-LoraWorkbench-hint', text);
  }

  private _session(session: ISessionInfo): HTMLElement {
    const key = session.variables[0];
    const chosen = this._selected.get(key) ?? new Set<string>();
    this._selected.set(key, chosen);
    const known = new Set(session.adapters.map(a => a.name));
    chosen.forEach(n => known.has(n) || chosen.delete(n));

    const box = el('section', 'jp-LoraWorkbench-session');
    box.dataset.variable = key;
    box.append(el('h3', '', session.variables.join(' = ')));
    const base = session.base;
    const line = el('div', 'jp-LoraWorkbench-base');
    line.append(el('b', '', 'base '), `${base.name} · ${base.class} · ${formatCount(base.parameters)} params`);
    line.title = `fingerprint ${base.fingerprint} on ${base.device}`;
    box.append(line);
    box.append(
      el('div', 'jp-LoraWorkbench-active', `using: ${session.active.length ? session.active.join(' + ') : 'base only'}`)
    );

    box.append(el('h4', '', `Adapters (${session.adapters.length})`));
    if (session.adapters.length === 0) {
      box.append(this._hint(`none yet: ${key}.train_lora(...), ${key}.load_adapter(path) or ready.load_all(${key})`));
    }
    const actions = el('div', 'jp-LoraWorkbench-actions');
    const buttons: [IAction, HTMLButtonElement][] = [];
    const update = () => {
      for (const [action, b] of buttons) {
        b.disabled = chosen.size < action.min;
      }
      count.textContent = chosen.size ? `${chosen.size} selected` : 'select adapters for actions';
    };
    const list = el('ul', 'jp-LoraWorkbench-adapters');
    for (const a of session.adapters) {
      list.append(this._adapter(a, chosen, update));
    }
    box.append(list);
    const count = el('div', 'jp-LoraWorkbench-count');
    for (const action of ACTIONS) {
      const b = el('button', 'jp-mod-styled jp-LoraWorkbench-action', action.label);
      b.dataset.action = action.id;
      b.title = `${action.caption} (needs ${action.min}+ selected)`;
      b.onclick = () => this._run(action);
      buttons.push([action, b]);
      actions.append(b);
    }
    if (session.adapters.length) {
      box.append(count, actions);
    }
    update();

    if (session.routers.length) {
      box.append(el('h4', '', `Routers (${session.routers.length})`));
      const routers = el('ul', 'jp-LoraWorkbench-routers');
      for (const r of session.routers) {
        routers.append(this._router(r, key));
      }
      box.append(routers);
    }
    return box;
  }

  private _router(r: IRouterInfo, lab: string): HTMLElement {
    const item = el('li', r.active ? 'jp-mod-active' : '');
    item.dataset.router = r.name;
    const trained = r.trained ? ' · trained' : '';
    item.append(
      el('b', '', r.name),
      ` ${r.mechanism} (${r.kind}) · ${r.modules} modules · ${formatCount(r.parameters)} params${trained}`
    );
    item.title = JSON.stringify({ params: r.params, needs: r.needs, trained: r.trained }, null, 1);
    const buttons = el('div', 'jp-LoraWorkbench-router-actions');
    for (const action of ROUTER_ACTIONS.filter(a => r.actions.includes(a.id))) {
      const b = el('button', 'jp-mod-styled jp-LoraWorkbench-action', action.label);
      b.dataset.routerAction = action.id;
      b.title = action.id === 'export' && r.exact_export ? `${action.caption} (exact for this router)` : action.caption;
      b.onclick = () => {
        if (this._panel) {
          void insertAndRun(this._panel, action.code(lab, r));
        }
      };
      buttons.append(b);
    }
    item.append(buttons);
    return item;
  }

  private _adapter(a: IAdapterInfo, chosen: Set<string>, update: () => void): HTMLElement {
    const item = el('li', a.active ? 'jp-mod-active' : '');
    item.dataset.adapter = a.name;
    const label = el('label', 'jp-LoraWorkbench-name');
    const box = el('input');
    box.type = 'checkbox';
    box.checked = chosen.has(a.name);
    box.onchange = () => {
      if (box.checked) {
        chosen.add(a.name);
      } else {
        chosen.delete(a.name);
      }
      update();
    };
    label.append(box, el('b', '', a.name), el('span', 'jp-LoraWorkbench-rank', `r=${a.rank}`));
    if (a.active) {
      label.append(el('span', 'jp-LoraWorkbench-badge', 'in use'));
    }
    item.append(label);
    const layers = a.layers ? ` × ${a.layers} layers` : '';
    item.append(el('div', 'jp-LoraWorkbench-targets', `${a.targets.join(', ')}${layers} (${a.modules} modules)`));
    item.append(
      el('div', 'jp-LoraWorkbench-size', `${formatCount(a.parameters)} params · ${formatBytes(a.bytes)} · ${a.scaling}`)
    );
    const made = el('div', 'jp-LoraWorkbench-lineage', a.made_by);
    made.title = JSON.stringify(a.lineage, null, 1);
    item.append(made);
    return item;
  }

  private _panel: NotebookPanel | null = null;
  private _state: State = { kind: 'no-notebook' };
  private _selected = new Map<string, Set<string>>();
  private _busy = false;
  private _again = false;
  private _stale = true;
  private _lastStatus: Kernel.Status = 'unknown';
}
