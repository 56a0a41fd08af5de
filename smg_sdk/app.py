"""``smg serve``: a Gradio app on a subject pipeline (the optional extra: ``pip install 'smg-sdk[app]'``).

Upload 1-4 reference images with class words, write the instruction with ``<k>`` placeholders,
pick preset, planner, verifier, candidates, steps and seed; the page shows a progress bar, the
chosen image, every candidate with its score, each plan's layout grid and chain of thought, and
the timings. A request the SDK refuses (an :class:`~smg_sdk.errors.SMGError`) shows its message
in the page; any other failure shows one line naming the exception type, with the traceback only
in the server's log. Pipelines are built once per (preset, planner, verifier) and reused.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable

from .errors import RequestError, SMGError

MAX_REFERENCES = 4
AUTO = "auto"
NONE = "none"


@dataclass
class GenerationView:
    """What the page shows for one submission (empty lists and text when a request failed)."""

    status: str = ""
    chosen: Any = None
    candidates: list[tuple[Any, str]] = field(default_factory=list)
    grids: list[tuple[Any, str]] = field(default_factory=list)
    cot: str = ""
    timings: str = ""


def collect_subjects(images: list[Any], words: list[str | None]) -> list[Any]:
    """The filled reference slots, in order, as Subjects (a class word without an image is refused)."""
    from .types import Subject

    subjects = []
    for k, (image, word) in enumerate(zip(images, words), start=1):
        word = (word or "").strip() or None
        if image is None:
            if word is not None:
                raise RequestError(f"reference {k} has the class word {word!r} but no image; upload one or clear the word.")
            continue
        if len(subjects) != k - 1:
            raise RequestError(f"reference {k} is filled but reference {len(subjects) + 1} is empty; fill the slots "
                               "in order, since <k> names the k-th reference.")
        subjects.append(Subject(image, word))
    return subjects


class PipelineCache:
    """Pipelines by (preset, planner, verifier, several candidates), each built once, on demand."""

    def __init__(self) -> None:
        self._pipes: dict[tuple, Any] = {}
        self._lock = threading.Lock()

    def get(self, preset: str, planner: str, verifier: str, candidates: int) -> Any:
        """The pipeline for these choices; ``verifier="auto"`` ranks several candidates with the planner's
        suggested verifier, else ``clip-text`` when registered (as ``smg generate`` does)."""
        from .cli import _load_pipeline, _quiet_loading
        from .pipeline import build_component
        from .plugins import get_registry

        key = (preset, planner, verifier, candidates > 1)
        with self._lock:
            if key not in self._pipes:
                _quiet_loading()
                args = argparse.Namespace(pipeline=None, preset=preset, option=[], allow_external=[],
                                          planner=None if planner == NONE else planner, aggregator=[], rule=[],
                                          verifier=None if verifier in (AUTO, NONE) else verifier,
                                          candidates=candidates)
                pipe = _load_pipeline(args)
                if verifier == AUTO and candidates > 1 and pipe.verifier is None \
                        and "clip-text" in get_registry().names("verifier"):
                    pipe.verifier = build_component("verifier", "clip-text")
                if verifier == NONE:
                    pipe.verifier = None
                pipe.set_progress_bar_config(disable=True)
                self._pipes[key] = pipe
            return self._pipes[key]


def _timings_table(timings: dict[str, float]) -> str:
    rows = "\n".join(f"| {phase} | {seconds:.3f} |" for phase, seconds in timings.items())
    total = sum(timings.values())
    return f"| phase | seconds |\n| --- | ---: |\n{rows}\n| **total** | **{total:.3f}** |"


def view_of(result: Any, subjects: list[Any]) -> GenerationView:
    """The page's view of a :class:`~smg_sdk.types.PipelineOutput` (candidates best first)."""
    from .cli import _candidate_rows

    rows = _candidate_rows(result)
    names = [s.class_word for s in subjects]
    view = GenerationView(chosen=result.images[0], timings=_timings_table(result.timings))
    cot = []
    for rank, (k, image, score, plan) in enumerate(rows):
        caption = f"#{k}" + (f" score {score:.3f}" if score is not None else "") + (" (chosen)" if rank == 0 else "")
        view.candidates.append((image, caption))
        if plan is None:
            continue
        if plan.layout is not None:
            view.grids.append((plan.grid_image(names=names, title=f"plan #{k}"), f"plan #{k} layout"))
        text = (plan.cot or "(no chain of thought)").strip()
        prompt = f"\n\n*prompt:* {plan.prompt}" if plan.prompt else ""
        cot.append(f"**plan #{k}**" + (f" (score {score:.3f})" if score is not None else "") + f"\n\n{text}{prompt}")
    view.cot = "\n\n---\n\n".join(cot) if cot else "(no planner: no chain of thought)"
    view.status = f"Done: {len(rows)} candidate(s) in {sum(result.timings.values()):.2f} s."
    return view


def run_generation(cache: PipelineCache, choices: dict[str, Any], images: list[Any], words: list[str | None],
                   progress: Callable[[float, str], None] | None = None) -> GenerationView:
    """Generate for one submission; ``choices`` holds preset, planner, verifier, prompt, candidates, steps, seed.

    SDK errors become the view's status (``Error: <message>``); nothing is raised for them.
    """
    try:
        subjects = collect_subjects(images, words)
        candidates, steps, seed = (_whole(choices[k], k) for k in ("candidates", "steps", "seed"))
        pipe = cache.get(choices["preset"], choices["planner"], choices["verifier"], candidates)

        def on_step(_pipe: Any, step: int, _t: Any, _tensors: dict) -> None:
            if progress is not None:
                progress((step + 1) / steps, f"denoising step {step + 1} of {steps}")

        result = pipe(choices["prompt"], subjects, num_inference_steps=steps, seed=seed, num_candidates=candidates,
                      callback_on_step_end=on_step)
        return view_of(result, subjects)
    except SMGError as exc:
        return GenerationView(status=f"**Error:** {exc}")
    except Exception as exc:  # a bug, not bad input: one line in the page, the traceback in the log
        traceback.print_exc(file=sys.stderr)
        return GenerationView(status=f"**Internal error** ({type(exc).__name__}); the server log has the details.")


def _whole(value: Any, name: str) -> int:
    """A whole number from a form field (Gradio sends floats), or RequestError naming the field."""
    if value is None or isinstance(value, bool) or not float(value).is_integer():
        raise RequestError(f"{name} must be a whole number, got {value!r}.")
    return int(value)


def _import_gradio() -> Any:
    """gradio, or an SMGError that says how to install the app extra."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no telemetry calls from a local tool
    try:
        import gradio
    except ImportError as exc:
        raise SMGError("smg serve needs the app extra: pip install 'smg-sdk[app]' (it installs gradio).") from exc
    return gradio


def _choices() -> tuple[list[str], list[str], list[str]]:
    """Registered presets, planners (with "none") and verifiers (with "auto" and "none")."""
    from .plugins import get_registry

    registry = get_registry()
    return (registry.names("preset"), [NONE, *registry.names("planner")],
            [AUTO, NONE, *registry.names("verifier")])


def _reference_inputs(gr: Any) -> list[Any]:
    """Four (image, class word) slots, image and word alternating."""
    slots: list[Any] = []
    with gr.Row():
        for k in range(1, MAX_REFERENCES + 1):
            with gr.Column(min_width=160):
                slots.append(gr.Image(label=f"reference <{k}>", type="pil", sources=["upload"], height=180,
                                      elem_id=f"ref{k}"))
                slots.append(gr.Textbox(label=f"class word of <{k}>", placeholder="e.g. dog", elem_id=f"word{k}"))
    return slots


def build_app(preset: str = "tiny", cache: PipelineCache | None = None) -> Any:
    """The Gradio Blocks app (not launched); ``preset`` is the preset selected on load."""
    gr = _import_gradio()
    cache = cache or PipelineCache()
    presets, planners, verifiers = _choices()
    if preset not in presets:
        raise RequestError(f"--preset {preset!r} is not registered; choose one of {', '.join(presets)}.")
    with gr.Blocks(title="smg-sdk: subject-driven generation", analytics_enabled=False) as app:
        gr.Markdown("## smg-sdk\nUpload 1-4 references, name each one's class, and write the instruction "
                    "with `<1>`, `<2>`... for the references.")
        slots = _reference_inputs(gr)
        prompt = gr.Textbox(label="instruction", placeholder="<1> next to <2> on the beach", elem_id="prompt")
        with gr.Row():
            preset_box = gr.Dropdown(presets, value=preset, label="preset", elem_id="preset")
            planner = gr.Radio(planners, value=NONE, label="planner", elem_id="planner")
            verifier = gr.Radio(verifiers, value=AUTO, label="verifier", elem_id="verifier")
        with gr.Row():
            candidates = gr.Slider(1, 4, value=1, step=1, label="candidates", elem_id="candidates-count")
            steps = gr.Slider(1, 50, value=8, step=1, label="steps", elem_id="steps")
            seed = gr.Number(value=0, precision=0, label="seed", elem_id="seed")
        button = gr.Button("Generate", variant="primary", elem_id="generate")
        status = gr.Markdown(elem_id="status")
        with gr.Row():
            chosen = gr.Image(label="chosen image", type="pil", format="png", interactive=False, height=300,
                              elem_id="chosen")
            gallery = gr.Gallery(label="candidates (best first)", columns=2, format="png", height=300,
                                 object_fit="contain", elem_id="candidates")
            grids = gr.Gallery(label="plans: layout grids", columns=2, format="png", height=300, object_fit="contain",
                               elem_id="grids")
        with gr.Row():
            cot = gr.Markdown(label="chain of thought", elem_id="cot")
            timings = gr.Markdown(elem_id="timings")

        def on_generate(preset_name, planner_name, verifier_name, text, count, step_count, seed_value, *refs,
                        progress=gr.Progress()):
            choices = {"preset": preset_name, "planner": planner_name, "verifier": verifier_name, "prompt": text,
                       "candidates": count, "steps": step_count, "seed": seed_value}
            view = run_generation(cache, choices, list(refs[0::2]), list(refs[1::2]),
                                  lambda fraction, desc: progress(fraction, desc=desc))
            return view.status, view.chosen, view.candidates, view.grids, view.cot, view.timings

        button.click(on_generate, [preset_box, planner, verifier, prompt, candidates, steps, seed, *slots],
                     [status, chosen, gallery, grids, cot, timings])
    return app


def serve(preset: str = "tiny", port: int = 7860, host: str = "127.0.0.1") -> None:
    """Build the app, load ``preset`` once (so the first request is quick) and serve until interrupted."""
    gr = _import_gradio()
    cache = PipelineCache()
    app = build_app(preset, cache)
    cache.get(preset, NONE, AUTO, 1)
    theme = gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"],  # local fonts: nothing to fetch
                              font_mono=["ui-monospace", "monospace"])
    print(f"smg serve: preset {preset} on http://{host}:{port}", flush=True)
    app.queue(default_concurrency_limit=1).launch(server_name=host, server_port=port, ssr_mode=False, quiet=True,
                                                  show_error=False, theme=theme, footer_links=[])
