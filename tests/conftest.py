"""Shared fixtures: the embedded tiny FLUX, loaded once per session, and small images."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.set_num_threads(1)  # the tiny models run fastest on one thread; two oversubscribe shared CPUs

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
DREAMBENCH = SHARED / "dreambench"


@pytest.fixture(scope="session")
def tiny_path() -> Path:
    from smg_sdk.presets.tiny import tiny_flux_path

    return tiny_flux_path()


@pytest.fixture()
def backend(tiny_path):
    """A fresh tiny FLUX backend (tests may add adapters to it)."""
    from smg_sdk.backends.flux import FluxBackend

    return FluxBackend.from_pretrained(tiny_path, max_sequence_length=32)


@pytest.fixture(scope="session")
def diffusers_pipe(tiny_path):
    """diffusers' own FluxPipeline on the same weights: the reference implementation."""
    from diffusers import FluxPipeline

    pipe = FluxPipeline.from_pretrained(str(tiny_path), local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def use_subject_adapter(pipe) -> None:
    """Route the reference encoder to a stream LoRA named ``subject``: the preset's shipped one, or a
    random one (seeded) where the package ships none."""
    if "subject" not in pipe.backend.stream_adapters:
        torch.manual_seed(0)
        pipe.backend.add_stream_adapter("subject", rank=4, init_lora_weights=False)
    pipe.encoders[1].adapter = "subject"
    pipe.encoders[1].smg_config["adapter"] = "subject"


def make_image(seed: int, size: int = 64) -> Image.Image:
    """A random but structured RGB image (blocks of colour), reproducible by seed."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, size=(4, 4, 3), dtype=np.uint8)
    return Image.fromarray(np.kron(blocks, np.ones((size // 4, size // 4, 1), dtype=np.uint8)), "RGB")


@pytest.fixture()
def images():
    return [make_image(i) for i in range(3)]


# Hypothesis: the kept fuzz suite (tests/test_fuzz_inputs.py) sets its own example counts; the
# profile fixes what CI needs: no deadline (a shared 2-core machine is noisy), no example
# database written into the checkout, and derandomised runs so CI results are reproducible.
from hypothesis import HealthCheck, settings  # noqa: E402

settings.register_profile(
    "ci", deadline=None, derandomize=True, database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)
settings.register_profile(
    "dev", deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))
