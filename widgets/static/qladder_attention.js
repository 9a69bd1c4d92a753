// QLadderAttention view (widgets/qladder_attention.py): the image, and one rung's attention upsampled
// over it. Traits: image {values uint8, shape}, stages, stage, query, n_queries, attention {values, shape}.

function bytes(view, Type) {
  if (!view) return new Type(0);
  const buffer = view.buffer ?? view;
  const start = view.byteOffset ?? 0;
  return new Type(buffer.slice(start, start + view.byteLength));
}

function paint(canvas, [h, w], pixel) {
  const size = 192;
  canvas.width = canvas.height = size;
  const ctx = canvas.getContext("2d");
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) {
    ctx.fillStyle = pixel(y * w + x);
    ctx.fillRect((x * size) / w, (y * size) / h, Math.ceil(size / w), Math.ceil(size / h));
  }
}

function render({ model, el }) {
  el.classList.add("lw-qladder");
  const draw = () => {
    const stage = document.createElement("select");
    stage.className = "lw-select";
    model.get("stages").forEach((s, i) => {
      const o = document.createElement("option");
      o.value = i; o.textContent = s; o.selected = i === model.get("stage");
      stage.append(o);
    });
    stage.addEventListener("change", () => { model.set("stage", Number(stage.value)); model.save_changes(); });
    const query = document.createElement("select");
    query.className = "lw-select";
    for (let q = -1; q < model.get("n_queries"); q++) {
      const o = document.createElement("option");
      o.value = q; o.textContent = q < 0 ? "all queries (mean)" : `query ${q}`; o.selected = q === model.get("query");
      query.append(o);
    }
    query.addEventListener("change", () => { model.set("query", Number(query.value)); model.save_changes(); });
    const img = model.get("image");
    const pixels = bytes(img.values, Uint8Array);
    const left = document.createElement("canvas");
    paint(left, img.shape ?? [0, 0], (i) => `rgb(${pixels[i]},${pixels[i]},${pixels[i]})`);
    const a = model.get("attention");
    const values = bytes(a.values, Float32Array);
    const max = Math.max(1e-12, ...values);
    const right = document.createElement("canvas");
    right.className = "lw-attention";
    paint(right, a.shape ?? [0, 0], (i) => `rgba(217,95,2,${(values[i] / max).toFixed(3)})`);
    const row = document.createElement("div");
    row.style.display = "flex";
    row.style.gap = "8px";
    row.append(left, right);
    const hint = document.createElement("div");
    hint.className = "lw-hint";
    hint.textContent = "left: the image; right: where the ladder queries attend at this rung (darker = more).";
    el.replaceChildren(stage, query, row, hint);
  };
  for (const e of ["change:image", "change:attention", "change:stages", "change:n_queries"]) model.on(e, draw);
  draw();
}

export default { render };
