// The controls of a merge method's own parameters, built from the specs Python declares
// (widgets/_merge_controls.py `control`): a checkbox, a menu, a slider, a number field or a text field.

import { div, input, option } from "./dom";

export type ParamValue = number | string | boolean | null;

/** One parameter's control spec, as `_merge_controls.control` writes it. */
export interface ParamSpec {
  name: string;
  kind: "bool" | "choice" | "int" | "float" | "text";
  default: ParamValue;
  choices?: ParamValue[];
  min?: number;
  max?: number;
  step?: number;
  /** None is a valid value ("auto" / "none"): an empty field. */
  optional?: boolean;
}

export interface ParamInput {
  spec: ParamSpec;
  get(): ParamValue;
  set(v: ParamValue | undefined): void;
}

const attr = (x: number | undefined) => (x === undefined ? "" : String(x));

/**
 * The control of `spec` showing `value`; `onChange` runs on every edit. Returns the control, the
 * element that shows a slider's value, and get/set of the value.
 */
export function paramControl(spec: ParamSpec, value: ParamValue | undefined, onChange: () => void):
  { control: HTMLElement; shown: HTMLElement; input: ParamInput } {
  let control: HTMLInputElement | HTMLSelectElement;
  let get: () => ParamValue;
  let set: (v: ParamValue | undefined) => void;
  const slider = spec.kind === "float" && !spec.optional;
  const shown = div("lw-value", "");
  const show = () => (shown.textContent = slider ? Number(get()).toFixed(2) : "");
  if (spec.kind === "bool") {
    const box = input("checkbox");
    control = box;
    get = () => box.checked;
    set = (v) => (box.checked = Boolean(v));
    box.addEventListener("change", onChange);
  } else if (spec.kind === "choice") {
    const choices = spec.choices ?? [];
    const menu = document.createElement("select");
    control = menu;
    for (const c of choices) menu.append(option(String(c), String(c)));
    get = () => choices[menu.selectedIndex]; // the value itself (null stays null)
    set = (v) => (menu.selectedIndex = Math.max(0, choices.findIndex((c) => c === v)));
    menu.addEventListener("change", onChange);
  } else if (slider) {
    const range = input("range", { min: attr(spec.min), max: attr(spec.max), step: attr(spec.step) });
    control = range;
    get = () => Number(range.value);
    set = (v) => (range.value = String(v));
    range.addEventListener("input", () => { show(); onChange(); });
  } else if (spec.kind === "int" || spec.kind === "float") {
    const field = input("number", { min: attr(spec.min), max: attr(spec.max), step: attr(spec.step),
      placeholder: spec.optional ? "auto" : "" });
    control = field;
    get = () => (field.value === "" ? null : Number(field.value));
    set = (v) => (field.value = v === null || v === undefined ? "" : String(v));
    field.addEventListener("input", onChange);
  } else {
    const field = input("text", { placeholder: spec.optional ? "none" : "" });
    control = field;
    get = () => (field.value === "" ? null : field.value);
    set = (v) => (field.value = v === null || v === undefined ? "" : String(v));
    field.addEventListener("change", onChange);
  }
  control.dataset.param = spec.name;
  set(value ?? spec.default);
  show();
  return { control, shown, input: { spec, get, set: (v) => { set(v); show(); } } };
}
