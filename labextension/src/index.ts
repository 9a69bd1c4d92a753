// LoRA Workbench for JupyterLab: the sidebar (sidebar.ts), its actions as commands in the palette,
// and one launcher card per tutorial notebook (tutorials/NN_name.ipynb in the server's root).

import { ILayoutRestorer, JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { ICommandPalette, showErrorMessage } from '@jupyterlab/apputils';
import { ILauncher } from '@jupyterlab/launcher';
import { INotebookTracker } from '@jupyterlab/notebook';
import { Contents } from '@jupyterlab/services';
import { LabIcon } from '@jupyterlab/ui-components';

import { ACTIONS, IAction, insertAndRun } from './actions';
import { WorkbenchSidebar } from './sidebar';

const CATEGORY = 'LoRA Workbench';
const TUTORIAL = /^(\d\d)_(.+)\.ipynb$/;

namespace CommandIDs {
  export const open = 'lora-workbench:open';
  export const refresh = 'lora-workbench:refresh';
  export const tutorial = 'lora-workbench:open-tutorial';
  export const action = (a: IAction) => `lora-workbench:${a.id}`;
}

// Two low-rank factors (a tall B, a wide A) and their product, in the theme's ink.
const ICON_SVG = `<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16" viewBox="0 0 24 24">
<g class="jp-icon3" fill="#616161"><rect x="2" y="3" width="4" height="18" rx="1"/>
<rect x="8" y="3" width="14" height="4" rx="1"/><rect x="8" y="9" width="14" height="12" rx="1" opacity="0.45"/></g></svg>`;

export const workbenchIcon = new LabIcon({ name: 'lora-workbench:icon', svgstr: ICON_SVG });

/** The tutorial notebooks the server offers: tutorials/NN_*.ipynb, else NN_*.ipynb at the root. */
async function tutorials(app: JupyterFrontEnd): Promise<Contents.IModel[]> {
  for (const dir of ['tutorials', '']) {
    try {
      const listing = await app.serviceManager.contents.get(dir, { content: true });
      const found = (listing.content as Contents.IModel[]).filter(m => TUTORIAL.test(m.name));
      if (found.length) {
        return found.sort((a, b) => a.name.localeCompare(b.name));
      }
    } catch {
      // no such folder: try the next place
    }
  }
  return [];
}

function tutorialLabel(name: string): string {
  const m = TUTORIAL.exec(name);
  return m ? `${m[1]} · ${m[2].replace(/_/g, ' ')}` : name;
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'lora-workbench:plugin',
  description: 'The workbench sessions of the active notebook, actions on adapters, tutorials in the launcher.',
  autoStart: true,
  requires: [INotebookTracker],
  optional: [ICommandPalette, ILauncher, ILayoutRestorer],
  activate: (
    app: JupyterFrontEnd,
    tracker: INotebookTracker,
    palette: ICommandPalette | null,
    launcher: ILauncher | null,
    restorer: ILayoutRestorer | null
  ) => {
    const { commands, shell } = app;

    const run = async (action: IAction) => {
      const chosen = sidebar.selection;
      const panel = sidebar.notebook;
      if (!panel || !chosen || chosen.names.length < action.min) {
        await showErrorMessage(
          `LoRA Workbench: ${action.label}`,
          `Select at least ${action.min} adapter(s) in the LoRA Workbench panel first.`
        );
        return;
      }
      const code = action.code(chosen.session.variables[0], chosen.names, chosen.session);
      shell.activateById(panel.id);
      await insertAndRun(panel, code);
    };

    const sidebar = new WorkbenchSidebar(tracker, action => void commands.execute(CommandIDs.action(action)));
    sidebar.title.icon = workbenchIcon;
    shell.add(sidebar, 'left', { rank: 900 });
    restorer?.add(sidebar, sidebar.id);

    commands.addCommand(CommandIDs.open, {
      label: 'Show the LoRA Workbench panel',
      caption: 'The workbench sessions in the kernel of the active notebook',
      icon: workbenchIcon,
      execute: () => shell.activateById(sidebar.id)
    });
    commands.addCommand(CommandIDs.refresh, {
      label: 'Refresh the LoRA Workbench panel',
      execute: () => sidebar.refresh()
    });
    for (const action of ACTIONS) {
      commands.addCommand(CommandIDs.action(action), {
        label: `${action.label} the selected adapters`,
        caption: action.caption,
        isEnabled: () => (sidebar.selection?.names.length ?? 0) >= action.min,
        execute: () => run(action)
      });
    }
    commands.addCommand(CommandIDs.tutorial, {
      label: args => (args.label as string) ?? 'Open a tutorial',
      caption: args => `Open ${args.path as string}`,
      icon: workbenchIcon,
      execute: args => commands.execute('docmanager:open', { path: args.path as string })
    });

    for (const command of [CommandIDs.open, CommandIDs.refresh, ...ACTIONS.map(CommandIDs.action)]) {
      palette?.addItem({ command, category: CATEGORY });
    }
    void tutorials(app).then(found => {
      found.forEach((m, rank) => {
        const args = { path: m.path, label: `Tutorial ${tutorialLabel(m.name)}` };
        launcher?.add({ command: CommandIDs.tutorial, args, category: CATEGORY, rank });
        palette?.addItem({ command: CommandIDs.tutorial, args, category: CATEGORY });
      });
    });

    console.log('JupyterLab extension lora-workbench is activated!');
  }
};

export default plugin;
