"""Shared fixtures of the AlignGen tests (imported by each test_aligngen_* module)."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """The tiny models run fastest on one thread; two oversubscribe the shared CPUs."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny_backend():
    """A tiny FLUX backend shared by a module's tests (they must not add adapters to it)."""
    from smg_sdk.backends.flux import FluxBackend
    from smg_sdk.presets.tiny import tiny_flux_path

    return FluxBackend.from_pretrained(tiny_flux_path(), max_sequence_length=64)


@pytest.fixture(scope="module")
def redux_encoder():
    from smg_plugins.aligngen.redux import ReduxEncoder

    return ReduxEncoder()


def quiet(pipe):
    pipe.set_progress_bar_config(disable=True)
    return pipe
