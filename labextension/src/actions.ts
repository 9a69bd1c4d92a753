// What the sidebar's buttons do: each action turns the selected adapters of one session into a ready
// cell, inserted below the active cell of the notebook and run there. One entry per action (add one
// here and it gets a button, a command and a palette item).

import { NotebookActions, NotebookPanel } from '@jupyterlab/notebook';

import { IRouterInfo, ISessionInfo } from './tokens';

export interface IAction {
  /** command id suffix: lora-workbench:<id> */
  id: string;
  label: string;
  caption: string;
  /** how many adapters it needs */
  min: number;
  /** the cell's source, for lab variable `lab` and the chosen adapter names */
  code(lab: string, names: string[], session: ISessionInfo): string;
}

const list = (names: (string | null)[]) =>
  '[' + names.map(n => (n === null ? 'None' : JSON.stringify(n))).join(', ') + ']';

/**
 * The tasks the chosen adapters were trained on, in order, once each: the union of the `tasks` the
 * engine ships per adapter (workbench.adapters.lineage.tasks_of; a merge's include its sources').
 */
function tasksOf(names: string[], session: ISessionInfo): string[] {
  const out: string[] = [];
  for (const a of session.adapters.filter(a => names.includes(a.name))) {
    for (const t of a.tasks ?? []) {
      if (!out.includes(t)) {
        out.push(t);
      }
    }
  }
  return out;
}

export const ACTIONS: IAction[] = [
  {
    id: 'compare',
    label: 'Compare',
    caption: 'Angle matrix of the selected adapters (click a cell for its per-module breakdown)',
    min: 2,
    code: (lab, names) =>
      'from widgets import AngleMatrix\n\n' +
      `AngleMatrix.from_adapters({name: ${lab}.adapters[name] for name in ${list(names)}})`
  },
  {
    id: 'merge',
    label: 'Merge',
    caption: 'Merge builder on the selected adapters',
    min: 2,
    code: (lab, names) =>
      'from widgets import MergeBuilder\n\n' + `MergeBuilder.from_lab(${lab}, ${list(names)})`
  },
  {
    id: 'evaluate',
    label: 'Evaluate',
    caption: 'Score the selected adapters and the base model on the tasks they were trained on',
    min: 1,
    code: (lab, names, session) => {
      const tasks = tasksOf(names, session);
      const load = tasks.length
        ? `wb.tasks.load(${list(tasks)})`
        : 'wb.tasks.load(["arithmetic"])  # no task in their lineage: choose from wb.tasks.TASKS.names()';
      return (
        'import workbench as wb\n\n' +
        `scores = ${lab}.evaluate(${list([...names, null])}, ${load})  # None = the base model\n` +
        'scores.pivot_table(index="adapter", columns="task", values="value")'
      );
    }
  },
  {
    id: 'export',
    label: 'Export',
    caption: 'Save the selected adapters as PEFT directories under exported/',
    min: 1,
    code: (lab, names) =>
      `for name in ${list(names)}:\n` +
      `    print(${lab}.save_adapter(name, f"exported/{name}"))  # PEFT format, lineage inside`
  }
];

/** An action on one router: its id is one of the `actions` the engine lists for that router. */
export interface IRouterAction {
  id: string;
  label: string;
  caption: string;
  /** the cell's source, for lab variable `lab` and the router */
  code(lab: string, router: IRouterInfo): string;
}

const PROMPTS =
  'prompts = ["Write the prompts to average the routing over here", "2 + 3 ="]' +
  '  # texts like the ones it will see\n';

/** The tasks a router was trained on (its training record), else a default to choose from. */
function routerTasks(router: IRouterInfo): string {
  const tasks = router.trained?.tasks;
  return Array.isArray(tasks) && tasks.length
    ? `wb.tasks.load(${list(tasks.map(String))})`
    : 'wb.tasks.load(["arithmetic"])  # no training record: choose from wb.tasks.TASKS.names()';
}

export const ROUTER_ACTIONS: IRouterAction[] = [
  {
    id: 'use',
    label: 'Use',
    caption: "Make the lab's forward apply this router",
    code: (lab, r) => `${lab}.use(${JSON.stringify(r.name)})`
  },
  {
    id: 'evaluate',
    label: 'Evaluate',
    caption: 'Score the router and the base model on the tasks it was trained on',
    code: (lab, r) =>
      'import workbench as wb\n\n' +
      `scores = ${lab}.evaluate([${JSON.stringify(r.name)}, None], ${routerTasks(r)})  # None = the base\n` +
      'scores.pivot_table(index="adapter", columns="task", values="value")'
  },
  {
    id: 'export',
    label: 'Export',
    caption: 'A static LoRA adapter (exact where the math allows, else averaged over prompts), saved as PEFT',
    code: (lab, r) =>
      (r.exact_export ? '' : PROMPTS) +
      `adapter = ${lab}.export_router(${JSON.stringify(r.name)}${r.exact_export ? '' : ', prompts'})\n` +
      `print(${lab}.save_adapter(adapter, f"exported/{adapter.name}"))  # PEFT format, lineage inside\n` +
      `${lab}.last_export  # exact, and the distance to the router on the prompts`
  },
  {
    id: 'freeze',
    label: 'Freeze',
    caption: 'Its bank at the average gate weights over prompts, as one adapter',
    code: (lab, r) =>
      'from workbench.routing import freeze\n\n' +
      PROMPTS +
      `adapter, report = freeze(${lab}, ${JSON.stringify(r.name)}, prompts)\n` +
      'report'
  },
  {
    id: 'save',
    label: 'Save',
    caption: 'Save the router (weights, parameters, training history) under routers/',
    code: (lab, r) => `${lab}.save_router(${JSON.stringify(r.name)}, "routers/${r.name}", overwrite=True)`
  }
];

/** Insert `code` as a new code cell below the active one, run it, and bring it into view. */
export async function insertAndRun(panel: NotebookPanel, code: string): Promise<boolean> {
  const notebook = panel.content;
  if (notebook.widgets.length === 0 || notebook.activeCellIndex < 0) {
    notebook.activeCellIndex = Math.max(0, notebook.widgets.length - 1);
  }
  NotebookActions.insertBelow(notebook);
  NotebookActions.changeCellType(notebook, 'code');
  const cell = notebook.activeCell!;
  cell.model.sharedModel.setSource(code);
  const ran = NotebookActions.run(notebook, panel.sessionContext);
  void notebook.scrollToCell(cell);
  return ran;
}
