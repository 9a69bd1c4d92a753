// A DOM for the view tests: happy-dom's window, its document and event classes as node globals.

import { Window } from "happy-dom";

export function installDom(): Window {
  const window = new Window();
  Object.assign(globalThis, { window, document: window.document, Event: window.Event,
    HTMLElement: window.HTMLElement });
  return window;
}
