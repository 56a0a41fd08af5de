"""The FLUX backend: everything FLUX-specific in the SDK lives in this package.

- :mod:`.backend`: :class:`FluxBackend`, diffusers' FLUX components behind the
  :class:`~smg_sdk.backends.base.Backend` contract (encoding, adapters, sampling, decoding,
  saving).
- :mod:`.sampler`: the flow-matching sampler that runs a core
  :class:`~smg_sdk.sampling.SamplingCall`.
- :mod:`.processor`: the attention processor (masks, cached keys/values).
- :mod:`.lora`: per-stream LoRA routing over peft layers.
- :mod:`.latents`, :mod:`.positions`: 2x2 packing and the 3-axis RoPE ids.
- :mod:`.encoders`: the ``flux-text`` and ``vae-reference`` condition encoders.
- :mod:`.pretrain`, :mod:`.recipes`: the tiny preset's SubjectWorld training recipes.
- :mod:`.plugin`: the registrations (``flux``, ``flux-text``, ``vae-reference``, ``tiny``).
"""


import importlib

__all__ = ["FluxBackend", "ImageEncoding", "PromptEncoding"]


def __getattr__(name: str):
    """``FluxBackend`` and its encodings load diffusers: only when first used, not when a
    sibling module (the registrations in :mod:`.plugin`, say) is imported."""
    if name in __all__:
        return getattr(importlib.import_module(".backend", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
