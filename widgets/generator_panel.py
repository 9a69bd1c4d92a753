"""GeneratorPanel: type what a task is, see which experts it is near, generate LoRAs, evaluate them.

The panel shows a fitted ``SGLoRA`` generator: a text box for a description (or a pick of a fitted
expert, whose own description fills the box), the proximity bars ``softmax(cos/τ)`` over the top-k
experts, a 2-D PCA map of the experts' description embeddings with the new task placed among them,
a "generate N" action (N samples ``dec(z, Σ w_i e_i)``), and "evaluate": the samples scored on a task
beside the nearest expert, the uniform average of the experts and (if given) a trained LoRA, one run
at a time with the progress shown. All the work (embedding, generation, evaluation) runs on one
background worker (``widgets._latest.Latest``), so the kernel keeps answering; the panel only renders
frames of ``workbench.generation.frames`` and the lab's scores.

Example::

    panel = GeneratorPanel.from_generator(sg, task=heldout_task, trained="topic_cs")
    panel                      # type a description -> bars and map; "generate" -> samples; "evaluate"
    panel.generated            # the Adapters made (not in the lab: evaluate, merge or save them)
"""

from __future__ import annotations

import traitlets as t

from widgets._frontend import bundle, stylesheet
from widgets._latest import Latest, Outcome
from widgets._view import View
from workbench.errors import WorkbenchError
from workbench.generation.frames import expert_map, proximity_frame


class GeneratorPanel(View):
    """SG-LoRA in a panel: description -> proximity and map -> N generated LoRAs -> their scores."""

    _esm = bundle("generator_panel")
    _css = stylesheet("generator_panel")

    description = t.Unicode("", help="What the new task is, in words (the SG-LoRA condition).").tag(sync=True)
    experts = t.List(t.Unicode(), help="The generator's experts, in fitted order.").tag(sync=True)
    expert_descriptions = t.List(
        t.Unicode(), help="Each expert's description (picking one fills the text box)."
    ).tag(sync=True)
    proximity = t.Dict(
        help="{'experts', 'weights', 'cosines'} of the current description (top-k "
        "softmax(cos/τ); 0 off the top-k); {} before the first."
    ).tag(sync=True)
    expert_map = t.Dict(
        help="{'names', 'kinds' (expert | query), 'x', 'y', 'weights'}: a 2-D PCA of "
        "the experts' embeddings with the query placed on it."
    ).tag(sync=True)
    n = t.Int(2, help="How many samples 'generate' draws (z ~ N(0, I), one seed).").tag(sync=True)
    seed = t.Int(0, help="The seed of the samples' z.").tag(sync=True)
    samples = t.List(t.Unicode(), help="The names of the generated adapters (panel.generated).").tag(
        sync=True
    )
    task = t.Unicode("", help="The task the evaluation scores on ('' when none was given).").tag(sync=True)
    eval_limit = t.Int(8, help="Held-out examples of the task per evaluation.").tag(sync=True)
    scores = t.Dict(
        help="{'rows': [{label, kind, value}], 'metric', 'higher_is_better', 'task', 'limit'}: "
        "samples beside the nearest expert, the uniform average and the trained LoRA."
    ).tag(sync=True)
    progress = t.Dict(
        {"done": 0, "total": 0, "label": ""},
        help="The running job's progress: runs done of total and what runs now.",
    ).tag(sync=True)
    busy = t.Bool(False, help="True while the background worker runs a job.").tag(sync=True)
    status = t.Unicode(
        "type a description", help="One line: what was done last, or the error with its fix."
    ).tag(sync=True)

    def __init__(self, *args, **traits) -> None:
        self.generator = None  # the SGLoRA shown
        self.eval_task = None  # the Task evaluations score on
        self.expert_adapters: dict[str, str] = {}  # expert -> the lab adapter trained for it
        self.trained: str | None = None  # a LoRA trained on the new task (the reference), if any
        self.generated: list = []  # the Adapters of the last 'generate'
        self._worker = Latest(threads=1, name="generator-panel")
        super().__init__(*args, **traits)
        self.on_msg(lambda _w, content, _b: self.act(content.get("action", "")))

    @classmethod
    def from_generator(
        cls,
        generator,
        *,
        task=None,
        experts: dict[str, str] | None = None,
        trained: str | None = None,
        description: str = "",
        eval_limit: int = 8,
        n: int = 2,
    ) -> GeneratorPanel:
        """A panel on a fitted ``SGLoRA``.

        Args:
            generator: the fitted SG-LoRA generator (its lab runs the evaluations).
            task: the Task the samples are evaluated on (None: no evaluation).
            experts: expert -> the lab's adapter trained for it (default: the lab adapters named as
                the experts); the nearest expert and the uniform average are made of these.
            trained: the lab's adapter trained on the new task, scored beside the samples (optional).
            description: the first description; eval_limit, n: as the traits.
        """
        generator._fitted()
        lab = generator.lab
        experts = experts if experts is not None else {e: e for e in generator.tasks if e in lab.adapters}
        missing = [a for a in [*experts.values(), *([trained] if trained else [])] if a not in lab.adapters]
        if missing:
            raise WorkbenchError(
                f"adapters {missing} are not in the generator's lab; add them or leave them out"
            )
        panel = cls(
            experts=list(generator.tasks),
            expert_descriptions=[generator.descriptions.get(e, "") for e in generator.tasks],
            task=task.name if task is not None else "",
            eval_limit=eval_limit,
            n=n,
        )
        panel.generator, panel.eval_task, panel.expert_adapters, panel.trained = (
            generator,
            task,
            experts,
            trained,
        )
        if description:
            panel.description = description
        return panel

    # -- actions ---------------------------------------------------------------------------------
    @t.observe("description")
    def _described(self, change) -> None:
        if self.generator is not None and change["new"].strip():
            self._submit("proximity", self._proximity_job(change["new"]))

    def act(self, action: str) -> None:
        """Run ``"generate"`` or ``"evaluate"`` in the background (the front end's buttons send these)."""
        jobs = {"generate": lambda: self._generate_job(self.description, self.n, self.seed),
                "evaluate": lambda: self._evaluate_job(list(self.generated))}
        if action not in jobs:
            self.status = f"unknown action {action!r}: use 'generate' or 'evaluate'"
            return
        self._submit(action, jobs[action]())

    def generate(self) -> list:
        """Generate ``n`` samples for the description now (blocking); returns the Adapters."""
        self.act("generate")
        self.wait()
        return self.generated

    def evaluate(self) -> dict:
        """Evaluate the last samples now (blocking); returns the ``scores`` payload."""
        self.act("evaluate")
        self.wait()
        return self.scores

    def wait(self, timeout: float | None = None) -> None:
        """Block until the background job is done (its result is shown)."""
        self._worker.wait(self._deliver, timeout)

    def close(self) -> None:
        self._worker.close()
        super().close()

    # -- the jobs (run on the worker) ------------------------------------------------------------
    def _submit(self, label: str, job) -> None:
        self.busy, self.status = True, f"{label}…"
        self._worker.submit(job, self._deliver)

    def _deliver(self, outcome: Outcome) -> None:
        if not self._worker.current(outcome.generation):
            return
        self.busy = False
        if outcome.error is not None:
            self.status = f"error: {outcome.error}"
            return
        with self.hold_sync():
            for name, value in outcome.value.items():
                if name == "generated":
                    self.generated = value
                else:
                    setattr(self, name, value)

    def _report(self, done: int, total: int, label: str) -> None:
        loop = self._worker._loop
        value = {"done": done, "total": total, "label": label}
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(setattr, self, "progress", value)
        else:
            self.progress = value

    def _proximity_job(self, text: str):
        gen = self.generator

        def job(check):
            frame = proximity_frame(gen, text)
            check()
            m = expert_map(gen, text)
            return {
                "proximity": {
                    "experts": list(frame.expert),
                    "weights": frame.weight.round(6).tolist(),
                    "cosines": frame.cosine.round(6).tolist(),
                },
                "expert_map": {
                    "names": list(m.name),
                    "kinds": list(m.kind),
                    "x": m.x.round(6).tolist(),
                    "y": m.y.round(6).tolist(),
                    "weights": m.weight.round(6).tolist(),
                },
                "status": f"nearest: {frame.set_index('rank').loc[1, 'expert']}",
            }

        return job

    def _generate_job(self, text: str, n: int, seed: int):
        gen = self.generator

        def job(check):
            if not text.strip():
                raise WorkbenchError("type a description of the task first")
            made = gen.generate(text, n=max(1, n), seed=seed, name="sg_panel")
            made = made if isinstance(made, list) else [made]
            return {
                "generated": made,
                "samples": [a.name for a in made],
                "scores": {},
                "status": f"generated {len(made)} sample(s) for: {text[:60]}",
            }

        return job

    def _evaluate_job(self, made: list):
        gen, task, limit = self.generator, self.eval_task, self.eval_limit
        experts, trained, text = dict(self.expert_adapters), self.trained, self.description

        def job(check):
            if task is None:
                raise WorkbenchError("this panel has no task to evaluate on; build it with task=...")
            if not made:
                raise WorkbenchError("generate samples first")
            runs = [(a.name, "sample", a) for a in made]
            weights = gen.proximity(text)
            nearest = next((e for e in weights.sort_values(ascending=False).index if e in experts), None)
            if nearest is not None:
                runs.append((f"nearest: {nearest}", "nearest", {"nearest": experts[nearest]}))
            if experts:
                runs.append(
                    (
                        "uniform average",
                        "uniform",
                        {"uniform": {a: 1 / len(experts) for a in experts.values()}},
                    )
                )
            if trained:
                runs.append((f"trained: {trained}", "trained", trained))
            runs.append(("base", "base", None))
            rows, metric, higher = [], task.metric, True
            for i, (label, kind, spec) in enumerate(runs):
                check()
                self._report(i, len(runs), label)
                scores = gen.lab.evaluate(
                    spec if isinstance(spec, dict) else [spec], task, limit=limit, progress=False
                )
                rows.append({"label": label, "kind": kind, "value": float(scores.value.iloc[0])})
                higher = bool(scores.higher_is_better.iloc[0])
            self._report(len(runs), len(runs), "done")
            return {
                "scores": {
                    "rows": rows,
                    "metric": metric,
                    "higher_is_better": higher,
                    "task": task.name,
                    "limit": limit,
                },
                "status": f"evaluated {len(runs)} runs on {task.name} ({limit} examples)",
            }

        return job
