// Binary payload parts -> typed arrays. ipywidgets hands `bytes` over as a DataView (Panel as an
// ArrayBuffer); a view into a larger buffer may start at an offset that is not 4-aligned, so copy.

import type { Binary } from "./model";

type TypedArrayOf<A> = { new (buffer: ArrayBuffer): A; new (length: number): A };

/** A copy of the bytes of `view` as a typed array (empty for none). */
export function typed<A>(view: Binary, Type: TypedArrayOf<A>): A {
  if (!view) return new Type(0);
  if (view instanceof ArrayBuffer) return new Type(view.slice(0));
  const buffer = view.buffer as ArrayBuffer;
  return new Type(buffer.slice(view.byteOffset, view.byteOffset + view.byteLength));
}

/** float32 bytes -> Float32Array (row-major, as numpy wrote them). */
export function floats(view: Binary): Float32Array {
  return typed(view, Float32Array);
}
