"""Concurrent calls on one pipeline are serialised: every image equals its sequential twin.

Prompt encoding uses the backend's tokenizers and stream adapters are switched on the shared
transformer, so interleaved calls used to return wrong images without an error. The pipeline
now holds its backend's lock for a whole generation (see docs/security.md).
"""

from __future__ import annotations

import threading

import pytest
import torch

from conftest import make_image
from smg_sdk import Subject, SubjectPipeline

THREADS, CALLS = 2, 20
PROMPTS = ["a photo of <1> on the grass", "a red <1> next to a blue house at night"]


def stream_lora_pipeline(mode: str) -> SubjectPipeline:
    from conftest import use_subject_adapter

    pipe = SubjectPipeline.from_preset("tiny", reference_mode=mode, position="omini")
    use_subject_adapter(pipe)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def run_concurrently(calls: list) -> list:
    """Run ``calls`` (callables) from THREADS threads, each taking every THREADS-th call."""
    results: list = [None] * len(calls)
    errors: list[BaseException] = []
    start = threading.Barrier(THREADS)

    def worker(offset: int) -> None:
        start.wait()
        try:
            for i in range(offset, len(calls), THREADS):
                results[i] = calls[i]()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    return results


def generation(pipe: SubjectPipeline, i: int, subjects: list[Subject]):
    return lambda: pipe(PROMPTS[i % 2], [subjects[i % 2]], seed=i, num_inference_steps=2, height=32, width=32,
                        output_type="pt").images


@pytest.mark.parametrize("mode", ["cached", "concat"])
def test_concurrent_calls_match_sequential_results(mode):
    pipe = stream_lora_pipeline(mode)
    subjects = [Subject(make_image(0, 32), "dog"), Subject(make_image(1, 32), "cat")]
    calls = [generation(pipe, i, subjects) for i in range(THREADS * CALLS)]
    sequential = [call() for call in calls]
    concurrent = run_concurrently(calls)
    wrong = [i for i, (a, b) in enumerate(zip(sequential, concurrent)) if not torch.equal(a, b)]
    assert not wrong, f"{len(wrong)} of {len(calls)} concurrent calls returned a different image"


def test_pipelines_sharing_a_backend_take_turns():
    cached = stream_lora_pipeline("cached")
    concat = SubjectPipeline(cached.backend, [cached.encoders[0], type(cached.encoders[1])(
        mode="concat", position="omini", adapter="subject")], schedule=cached.schedule, defaults=cached.defaults)
    concat.set_progress_bar_config(disable=True)
    assert concat.lock is cached.lock
    subjects = [Subject(make_image(0, 32), "dog"), Subject(make_image(1, 32), "cat")]
    calls = [generation(cached if i % 2 else concat, i, subjects) for i in range(THREADS * CALLS // 2)]
    sequential = [call() for call in calls]
    assert [torch.equal(a, b) for a, b in zip(sequential, run_concurrently(calls))] == [True] * len(calls)
