// Small DOM builders shared by the views.

export function div(className: string, text = ""): HTMLDivElement {
  const d = document.createElement("div");
  d.className = className;
  d.textContent = text;
  return d;
}

export function input(type: string, props: Partial<HTMLInputElement> = {}): HTMLInputElement {
  const i = document.createElement("input");
  i.type = type;
  Object.assign(i, props);
  return i;
}

export function button(text: string, className = "lw-button"): HTMLButtonElement {
  const b = document.createElement("button");
  b.textContent = text;
  b.className = className;
  return b;
}

/** A range slider; numbers become the input's string attributes. */
export function slider(min: number, max: number, step: number, value: number): HTMLInputElement {
  return input("range", { min: String(min), max: String(max), step: String(step), value: String(value) });
}

export function option(text: string, value: string): HTMLOptionElement {
  const o = document.createElement("option");
  o.textContent = text;
  o.value = value;
  return o;
}

/** A select offering `labels` (value -> text, in order). */
export function menu(labels: Record<string, string>): HTMLSelectElement {
  const m = document.createElement("select");
  for (const [value, text] of Object.entries(labels)) m.append(option(text, value));
  return m;
}

/** `control` after a small grey name, in one label (a click on the name focuses the control). */
export function labelled(text: string, control: HTMLElement): HTMLLabelElement {
  const l = document.createElement("label");
  l.className = "lw-field";
  l.append(div("lw-field-name", text), control);
  return l;
}

export const SVG = "http://www.w3.org/2000/svg";

export function svgEl<K extends keyof SVGElementTagNameMap>(
  tag: K, attrs: Record<string, string | number> = {},
): SVGElementTagNameMap[K] {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  return e;
}

/** A tokenizer's token as text: the byte-level BPE marks for space and newline made visible. */
export function tokenText(token: string): string {
  return token.replace("Ġ", " ").replace("Ċ", "⏎");
}

/** Listen to `change:<trait>` for each trait; returns the cleanup that stops listening. */
export function listen<T>(
  model: { on(e: `change:${string & keyof T}`, cb: () => void): void;
    off(e: `change:${string & keyof T}`, cb: () => void): void },
  traits: (string & keyof T)[], callback: () => void,
): () => void {
  const events = traits.map((n) => `change:${n}` as const);
  for (const e of events) model.on(e, callback);
  return () => events.forEach((e) => model.off(e, callback));
}
