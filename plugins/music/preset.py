"""MUSIC presets: ``music-tiny`` (the embedded tiny FLUX) and ``music`` (local models).

``music-tiny(trained_planner=True)`` plans with the tiny Qwen2.5-VL trained as a whole on
SubjectWorld's ground-truth plans (``smg music-planner train``; shipped in this package as
``weights/planner/``, see :func:`tiny_planner_path`). It is opt-in: measured on 32 held-out
requests per subject count it writes valid plans for 100 / 100 / 94 / 72 % of them at k = 1..4,
and those plans keep the stated relations less often than the heuristic plan the random planner
falls back to (plugin README).

Both are the FLUX text + VAE-reference pipeline with MUSIC's planner, ``music-layout`` rule and
``clip-text`` verifier. ``music``: what a user downloads is ``black-forest-labs/FLUX.1-dev``
(diffusers format: ``model_index.json``, ``transformer/``, ``vae/``, ``text_encoder/``,
``tokenizer/``, ``text_encoder_2/``, ``tokenizer_2/``, ``scheduler/``), a Qwen2.5-VL planner
folder (``Qwen/Qwen2.5-VL-7B-Instruct`` as published), optionally the planner LoRA folder
:func:`smg_plugins.music.training.train_planner` writes, optionally a reference LoRA file, and
``openai/clip-vit-large-patch14`` for the verifier (``config.json``, ``model.safetensors``,
``preprocessor_config.json``, tokenizer files).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from smg_sdk import ConfigError, ModelLoadError, SubjectPipeline, get_registry, parse_dtype

MUSIC_DEFAULTS: dict[str, Any] = {"height": 512, "width": 512, "num_inference_steps": 28, "guidance_scale": 3.5}
"""FLUX.1-dev's 28 steps and guidance 3.5 at 512 px (the MUSIC paper's own settings are not recorded here)."""


def tiny_planner_path() -> Path:
    """The shipped trained tiny planner folder (a complete Qwen2.5-VL folder, safetensors);
    :class:`~smg_sdk.ModelLoadError` if it is missing from this installation."""
    folder = Path(__file__).resolve().parent / "weights" / "planner"
    if not (folder / "model.safetensors").is_file():
        raise ModelLoadError(f"The trained tiny planner is missing from {folder}; reinstall smg-sdk, or pass "
                             "model_path= to the music planner.")
    return folder


def tiny_planner_settings() -> dict[str, Any]:
    """``music`` planner settings of ``music-tiny``: the trained tiny planner, 64 px references, 1 thread."""
    return {"model_path": str(tiny_planner_path()), "image_size": 64, "num_threads": 1}


def with_music(base: SubjectPipeline, planner: Any, verifier: Any, layout_mode: str = "hard",
               defaults: dict[str, Any] | None = None) -> SubjectPipeline:
    """``base`` with MUSIC's layout rule (``layout_mode``), ``planner`` and ``verifier`` added."""
    rule = get_registry().build("rule", "music-layout", mode=layout_mode)
    return SubjectPipeline(base.backend, base.encoders, base.aggregators, [*base.rules, rule], base.schedule,
                           planner, verifier, defaults=base.defaults if defaults is None else defaults)


TINY_PLANNERS = ("music", "music-heuristic")
"""The planners ``music-tiny`` keeps the chain of thought out of the prompt for."""


def music_tiny(planner: str = "music", layout_mode: str = "hard", reference_mode: str = "concat",
               trained_planner: bool = False, verifier: str = "clip-text",
               verifier_options: dict[str, Any] | None = None, **planner_settings: Any) -> SubjectPipeline:
    """Tiny FLUX + ``music`` (or ``music-heuristic``) planner + ``music-layout`` + ``clip-text``.

    ``trained_planner=True``: the ``music`` planner is the shipped trained tiny planner
    (:func:`tiny_planner_settings`; ``planner_settings`` still override it). Otherwise it is the
    random tiny Qwen2.5-VL, whose plans fail validation and fall back to the heuristic plan.
    ``verifier``/``verifier_options``: another registered verifier ranks the candidates, e.g.
    ``verifier="scene-judge", verifier_options={"judge": "subjectworld"}`` (the SubjectWorld
    oracle as the judge, as ``benchmarks/subjectworld.py`` measures test-time scaling).

    The chain of thought is not added to the prompt (``cot_in_prompt=False`` for the ``music``
    and ``music-heuristic`` planners unless passed): the tiny T5 only ever saw short captions, and
    with the CoT appended the tiny FLUX loses the instruction (3 subjects, 64 held-out requests:
    instruction 0.25 without a plan, 0.08 with the CoT in the prompt, 0.31 without it; see
    ``plugins/music/README.md``).
    """
    registry = get_registry()
    if planner in TINY_PLANNERS:
        planner_settings = {"cot_in_prompt": False, **planner_settings}
    if verifier_options is not None and not isinstance(verifier_options, dict):
        raise ConfigError(f"verifier_options must be a dict of the {verifier!r} verifier's options, "
                          f"not {type(verifier_options).__name__}.")
    if trained_planner:
        if planner != "music":
            raise ConfigError(f"trained_planner=True needs planner='music', not {planner!r}.")
        planner_settings = {**tiny_planner_settings(), **planner_settings}
    tiny = SubjectPipeline.from_preset("tiny", reference_mode=reference_mode)
    return with_music(tiny, registry.build("planner", planner, **planner_settings),
                      registry.build("verifier", verifier, **(verifier_options or {})), layout_mode)


def music(path: str, planner_path: str, clip_path: str, planner_adapter_path: str | None = None,
          lora_path: str | None = None, *, layout_mode: str = "hard", reference_mode: str = "concat",
          position: str = "omini", dtype: str | None = "bf16", device: str | None = None,
          offload: str | None = None, max_sequence_length: int = 512, **planner_settings: Any) -> SubjectPipeline:
    """MUSIC on local FLUX.1, Qwen2.5-VL planner and CLIP folders (see the module docstring for the downloads).

    ``path``: a diffusers-format FLUX.1 folder; ``planner_path``: the planner MLLM folder;
    ``planner_adapter_path``: its trained LoRA folder (without it the base MLLM plans, and
    unparseable plans fall back to the heuristic); ``clip_path``: the verifier's CLIP folder;
    ``lora_path``: a reference LoRA as in the ``reference-lora`` preset. ``dtype`` (``bf16``
    default, ``fp16``, ``fp32``) is every model's; ``device`` and ``offload`` (None,
    ``"model"``, ``"group"``) as :meth:`SubjectPipeline.place`. Other keywords are
    ``music`` planner settings (``max_attempts``, ``temperature``...). Raises
    :class:`~smg_sdk.RequestError` for an unknown dtype and :class:`~smg_sdk.PlacementError`
    for an unknown offload.
    """
    name = str(parse_dtype(dtype)).removeprefix("torch.") if dtype is not None else None
    registry = get_registry()
    base = SubjectPipeline.from_preset("reference-lora", path=path, lora_path=lora_path, dtype=dtype,
                                       reference_mode=reference_mode, position=position,
                                       max_sequence_length=max_sequence_length)
    load_on = device if offload in (None, "none") else None
    planner = registry.build("planner", "music", model_path=str(planner_path),
                             adapter_path=str(planner_adapter_path) if planner_adapter_path else None,
                             torch_dtype=name, device=load_on, **planner_settings)
    verifier = registry.build("verifier", "clip-text", model_path=str(clip_path), torch_dtype=name, device=load_on)
    return with_music(base, planner, verifier, layout_mode, dict(MUSIC_DEFAULTS)).place(device, None, offload)
