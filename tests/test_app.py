"""The app's logic without a browser: real tiny pipelines, the view the page shows, errors as messages."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import make_image
from smg_sdk.app import PipelineCache, collect_subjects, run_generation
from smg_sdk.errors import RequestError


@pytest.fixture(scope="module")
def cache() -> PipelineCache:
    return PipelineCache()


def choices(**changes):
    base = {"preset": "tiny", "planner": "music-heuristic", "verifier": "auto", "prompt": "<1> left of <2> on sand",
            "candidates": 2, "steps": 2, "seed": 0}
    return {**base, **changes}


def test_view_has_chosen_image_scored_candidates_grids_and_timings(cache):
    fractions = []
    view = run_generation(cache, choices(), [make_image(1), make_image(2), None, None], ["dog", "cat", "", None],
                          lambda fraction, desc: fractions.append(fraction))
    assert view.status.startswith("Done: 2 candidate(s)"), view.status
    assert view.chosen is not None and view.chosen.size == (128, 128)
    assert [caption.split()[1] for _, caption in view.candidates] == ["score", "score"]  # clip-text ranked them
    assert view.candidates[0][1].endswith("(chosen)")
    assert len(view.grids) == 2 and "plan #" in view.cot and "| denoise |" in view.timings
    assert fractions and fractions[-1] == 1.0


def test_same_seed_same_image(cache):
    refs, words = [make_image(3), None, None, None], ["ball", None, None, None]
    one = run_generation(cache, choices(planner="none", candidates=1, prompt="<1> in snow"), refs, words)
    two = run_generation(cache, choices(planner="none", candidates=1, prompt="<1> in snow"), refs, words)
    assert one.chosen.tobytes() == two.chosen.tobytes()
    assert one.grids == [] and "no planner" in one.cot


@pytest.mark.parametrize("change, images, words, expected", [
    ({"prompt": "<1> next to <3>"}, [make_image(1), make_image(2)], ["dog", "cat"], "<3>"),
    ({"prompt": ""}, [make_image(1)], ["dog"], "prompt"),
    ({"steps": 2.5}, [make_image(1)], ["dog"], "steps must be a whole number"),
    ({"preset": "no-such"}, [make_image(1)], ["dog"], "no preset named 'no-such'"),
    ({}, [None, make_image(2)], [None, "cat"], "reference 2 is filled but reference 1 is empty"),
    ({}, [make_image(1), None], ["dog", "cat"], "reference 2 has the class word 'cat' but no image"),
])
def test_bad_input_is_the_sdk_message_not_a_traceback(cache, change, images, words, expected):
    view = run_generation(cache, choices(**change), images, words)
    assert view.status.startswith("**Error:** ") and expected in view.status, view.status
    assert view.chosen is None and view.candidates == [] and "Traceback" not in view.status


def test_collect_subjects_keeps_order_and_optional_words():
    subjects = collect_subjects([make_image(1), make_image(2), None, None], ["dog", " ", None, ""])
    assert [s.class_word for s in subjects] == ["dog", None]
    with pytest.raises(RequestError, match="reference 3"):
        collect_subjects([make_image(1), None, None, None], [None, None, "cat", None])


def test_serve_without_gradio_says_how_to_install():
    code = ("import sys; sys.modules['gradio'] = None; from smg_sdk.cli import main; "
            "sys.exit(main(['serve', '--port', '7999']))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip() == ("smg: error: smg serve needs the app extra: pip install 'smg-sdk[app]' "
                                   "(it installs gradio).")
