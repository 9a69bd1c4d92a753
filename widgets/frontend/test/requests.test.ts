// The merge builder's request / answered protocol (src/lib/requests.ts, as merge_builder.ts drives it)
// against a fake model, with Python played by hand: debounce, one request in flight, queued settings
// sent on the answer, stale previews never current, actions that apply to what the controls show.

import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, it, mock } from "node:test";
import { DEBOUNCE_MS, Requests, type RequestTraits } from "../src/lib/requests";
import { FakeModel } from "./fake_model";

interface Traits extends RequestTraits {
  weights: Record<string, number>;
  method: string;
  error_map: Record<string, unknown>;
}

function setup(overlap = false) {
  const model = new FakeModel<Traits>({ request: 0, answered: 0, status: "current", weights: { a: 1 },
    method: "ties", error_map: { title: "request 0" } });
  const controls = { weights: { a: 1 }, method: "ties" }; // what the view's controls show
  let redraws = 0;
  const requests = new Requests(model, () => ({ ...controls }), () => redraws++, DEBOUNCE_MS, overlap);
  model.on("change:answered", () => requests.answered());
  // Python: compute the request it was sent, set the previews, then `answered` (merge_builder.py)
  const answer = (status = "current", n = model.get("request")) => {
    model.python({ error_map: { title: `request ${n}` }, answered: n, status });
  };
  return { model, controls, requests, answer, redraws: () => redraws };
}

describe("request / answered", () => {
  beforeEach(() => mock.timers.enable({ apis: ["setTimeout"] }));
  afterEach(() => mock.timers.reset());

  it("debounces a burst of changes into one request with the latest settings", () => {
    const { model, controls, requests } = setup();
    for (const w of [0.2, 0.4, 0.6]) {
      controls.weights = { a: w };
      requests.changed();
      mock.timers.tick(DEBOUNCE_MS - 1);
    }
    assert.equal(model.saved.length, 0);
    mock.timers.tick(1);
    assert.deepEqual(model.saved, [{ weights: { a: 0.6 }, method: "ties", request: 1, status: "computing…" }]);
    assert.ok(requests.inFlight() && !requests.current());
  });

  it("keeps one request in flight and sends the settings that waited when the answer arrives", () => {
    const { model, controls, requests, answer } = setup();
    requests.changed();
    mock.timers.tick(DEBOUNCE_MS); // request 1 in flight
    controls.method = "dare";
    requests.changed();
    mock.timers.tick(DEBOUNCE_MS);
    assert.equal(model.saved.length, 1, "nothing is sent while request 1 is unanswered");
    assert.ok(requests.queued);
    answer(); // Python answers request 1: the queued settings go out as request 2
    assert.equal(model.saved.length, 2);
    assert.deepEqual(model.saved[1], { weights: { a: 1 }, method: "dare", request: 2, status: "computing…" });
    assert.ok(!requests.current(), "request 1's previews are not current for request 2's settings");
    answer();
    assert.ok(requests.current());
    assert.equal(model.get("error_map").title, "request 2");
  });

  it("with overlap, sends a newer request at once while one is in flight (Python cancels the older)", () => {
    const { model, controls, requests, answer } = setup(true);
    requests.changed();
    mock.timers.tick(DEBOUNCE_MS); // request 1 in flight
    controls.method = "dare";
    requests.changed();
    mock.timers.tick(DEBOUNCE_MS);
    assert.equal(model.saved.length, 2);
    assert.deepEqual(model.saved[1], { weights: { a: 1 }, method: "dare", request: 2, status: "computing…" });
    assert.ok(!requests.queued && requests.inFlight());
    answer("current", 1); // request 1 finished before request 2 arrived: not current
    assert.ok(!requests.current());
    answer("current", 2);
    assert.ok(requests.current());
  });

  it("never calls a preview current while the controls moved since, or when Python reports an error", () => {
    const { requests, answer } = setup();
    assert.ok(requests.current());
    requests.changed(); // moved, not yet sent
    assert.ok(!requests.current() && requests.waiting());
    mock.timers.tick(DEBOUNCE_MS);
    assert.ok(!requests.current() && requests.waiting()); // sent, not answered
    requests.changed(); // moved again while in flight
    answer(); // the answer to the earlier settings: stale on arrival
    assert.ok(!requests.current() && requests.dirty);
    mock.timers.tick(DEBOUNCE_MS);
    answer("error: the ranks differ; choose another method");
    assert.ok(!requests.current() && !requests.waiting(), "answered, but not current: the status says why");
  });

  it("never calls the answer to an older request current", () => {
    const { model, requests, answer } = setup();
    requests.changed();
    mock.timers.tick(DEBOUNCE_MS); // request 1
    requests.changed();
    requests.settle(); // a button: request 2 goes out at once, with request 1 unanswered
    assert.equal(model.get("request"), 2);
    answer("current", 1); // Python's answer to request 1 says "current" for request 1's settings
    assert.ok(!requests.current() && requests.inFlight());
    answer("current", 2);
    assert.ok(requests.current());
  });

  it("sends a metric change at once (delay 0) and redraws on every state change", () => {
    const { model, requests, redraws } = setup();
    requests.changed(0);
    mock.timers.tick(0);
    assert.equal(model.saved.length, 1);
    assert.ok(redraws() >= 2); // on the change and on the send
  });

  it("sends the shown settings before an action's message, even with a request in flight", () => {
    const { model, controls, requests } = setup();
    requests.changed();
    mock.timers.tick(DEBOUNCE_MS); // request 1 in flight
    controls.weights = { a: 0.5 };
    requests.changed(); // not yet sent when the button is pressed
    model.set({ method: "ties" }); // what act() sets from the fields
    requests.settle();
    model.send({ action: "evaluate" });
    assert.equal(model.saved.length, 2);
    assert.equal(model.saved[1].request, 2);
    assert.deepEqual(model.saved[1].weights, { a: 0.5 });
    assert.deepEqual(model.sent, [{ content: { action: "evaluate" }, afterSaves: 2 }]);
    mock.timers.tick(DEBOUNCE_MS);
    assert.equal(model.saved.length, 2, "the debounce was cancelled: no duplicate request");
  });

  it("saves the fields but starts no request for an action on unchanged settings", () => {
    const { model, requests } = setup();
    model.set("status", "current");
    requests.settle();
    assert.deepEqual(model.saved, [{ status: "current" }]);
    assert.equal(model.get("request"), 0);
  });

  it("sends nothing after dispose", () => {
    const { model, requests } = setup();
    requests.changed();
    requests.dispose();
    mock.timers.tick(DEBOUNCE_MS * 2);
    assert.equal(model.saved.length, 0);
  });
});
