"""Where a composed pipeline's models live and run: ``to``, model offload, group offload.

A composed pipeline holds models in many places: the backend (FLUX transformer, VAE, CLIP,
T5), and its components (an MLLM in a Squeeze encoder or a MUSIC planner, SigLIP + Redux in
an AlignGen encoder, CLIP in a verifier, learnable aggregators). :func:`inventory` finds them
all, and the pipeline places them together:

- :func:`move` (``SubjectPipeline.to``): every module to one device and/or dtype;
- :func:`enable_model_offload` (``SubjectPipeline.enable_model_cpu_offload``): each *model*
  kept on the CPU and moved whole to the execution device when it runs, as diffusers'
  ``DiffusionPipeline.enable_model_cpu_offload`` does with accelerate's
  :func:`~accelerate.cpu_offload_with_hook`; here a model's hook first offloads every other
  model, so one model at a time is on the device whatever order the components call them in;
- :func:`enable_group_offload` (``SubjectPipeline.enable_group_offload``): diffusers'
  :func:`~diffusers.hooks.apply_group_offloading` on every model.

*Models* are the modules that components hold without being modules themselves (an MLLM,
SigLIP, CLIP) plus the backend's; components that are modules themselves (aggregators,
learnable encoders: small) are *resident*: offloading keeps them on the execution device.

Once offloaded, a module's parameters are on the CPU (or meta) whatever device it runs on,
so the device to put inputs on is :func:`execution_device` (diffusers'
``DiffusionPipeline._execution_device``: the offload hooks' device), never
``module.device``. A component that calls a model through something other than its
``forward`` (``get_image_features``, a backbone submodule) calls :func:`onload` first, as
diffusers' ``apply_forward_hook`` does for ``AutoencoderKL.encode``/``decode``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator

import torch

from .errors import PlacementError, RequestError, SMGError

GROUP_OFFLOAD_TYPES = ("block_level", "leaf_level")
DTYPES = {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp16": torch.float16, "float16": torch.float16,
          "fp32": torch.float32, "float32": torch.float32}
"""The ``dtype`` names the real-model presets accept."""


def parse_dtype(dtype: str | torch.dtype | None, argument: str = "dtype",
                error: type[SMGError] = RequestError) -> torch.dtype | None:
    """``"bf16"``/``"fp16"``/``"fp32"`` (or ``"bfloat16"``, ``"torch.bfloat16"``..., a torch dtype,
    None) as a torch dtype: the one parser of dtype names every loader uses.

    Raises ``error`` (:class:`~smg_sdk.errors.RequestError` by default) naming ``argument`` and
    the accepted names otherwise.
    """
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    name = str(dtype).removeprefix("torch.").lower()
    if name not in DTYPES:
        raise error(f"{argument} {dtype!r} is not one of {sorted(DTYPES)} (or a torch dtype such as torch.bfloat16).")
    return DTYPES[name]


def parse_device(device: str | torch.device | None, argument: str = "device") -> torch.device | None:
    """``device`` as a ``torch.device`` this torch can use (None stays None).

    Raises :class:`~smg_sdk.errors.PlacementError` naming ``argument`` for a string torch does
    not parse (``"gpu"``) or an accelerator this build or machine does not have (``"cuda"`` on a
    CPU-only torch). ``"meta"`` is allowed (placement tests use it).
    """
    if device is None:
        return None
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise PlacementError(f"{argument} {device!r} is not a torch device; use e.g. 'cpu', 'cuda', 'cuda:1' or 'mps'.") from None
    if parsed.type in ("cpu", "meta"):
        return parsed
    accelerator = torch.accelerator.current_accelerator() if torch.accelerator.is_available() else None
    if accelerator is None or accelerator.type != parsed.type:
        have = f"only {accelerator.type} and cpu" if accelerator is not None else "only cpu"
        raise PlacementError(f"{argument} {device!r}: this machine's torch has {have}; pass one of those.")
    return parsed


@dataclass
class Inventory:
    """Every module of a pipeline, by a readable name (``"backend.transformer"``, ``"encoders[1].mllm"``).

    ``models`` are offloaded by the offload modes; ``resident`` stay on the execution device.
    """

    models: dict[str, torch.nn.Module] = field(default_factory=dict)
    resident: dict[str, torch.nn.Module] = field(default_factory=dict)

    def all(self) -> dict[str, torch.nn.Module]:
        return {**self.models, **self.resident}


def inventory(pipe: Any) -> Inventory:
    """The modules of ``pipe.backend`` and of every component, each once (shared models are found once).

    A component that defines ``placement_modules() -> dict[str, Module]`` names its models
    itself; otherwise its attributes are searched (three levels deep) for modules.
    """
    inv, seen = Inventory(), {id(pipe.backend)}
    for name, module in pipe.backend.modules().items():
        _add(inv.models, seen, f"backend.{name}", module)
    for label, component in _labelled_components(pipe):
        if isinstance(component, torch.nn.Module):
            _add(inv.resident, seen, label, component)
            continue
        for name, module in _held_modules(component, seen, depth=3):
            _add(inv.models, seen, f"{label}.{name}", module)
    return inv


def _labelled_components(pipe: Any) -> Iterator[tuple[str, Any]]:
    for kind in ("encoders", "aggregators", "rules"):
        for i, component in enumerate(getattr(pipe, kind)):
            yield f"{kind}[{i}]", component
    for kind in ("schedule", "planner", "verifier"):
        component = getattr(pipe, kind)
        if component is not None:
            yield kind, component


def _add(target: dict[str, torch.nn.Module], seen: set[int], name: str, module: torch.nn.Module) -> None:
    if id(module) not in seen:
        seen.add(id(module))
        target[name] = module


def _held_modules(obj: Any, seen: set[int], depth: int) -> Iterator[tuple[str, torch.nn.Module]]:
    """``(attribute path, module)`` for the modules ``obj`` holds (not itself a module)."""
    named = getattr(obj, "placement_modules", None)
    if callable(named):
        yield from named().items()
        return
    if depth == 0 or not hasattr(obj, "__dict__"):
        return
    for attr, value in vars(obj).items():
        if id(value) in seen or value is None or isinstance(value, (str, bytes, int, float, bool, torch.Tensor)):
            continue
        if isinstance(value, torch.nn.Module):
            yield attr.lstrip("_"), value
        elif hasattr(value, "__dict__") and type(value).__module__.split(".")[0] not in ("builtins", "torch"):
            yield from ((f"{attr.lstrip('_')}.{n}", m) for n, m in _held_modules(value, seen | {id(obj)}, depth - 1))


# ---------------------------------------------------------------------- devices
def execution_device(module: torch.nn.Module) -> torch.device:
    """The device ``module`` computes on: its offload hook's device if it has one, else its parameters'.

    Follows diffusers' ``DiffusionPipeline._execution_device``: a group-offloading hook's
    ``onload_device`` (diffusers), then an accelerate hook's ``execution_device``, then the
    first parameter's (or buffer's) device, then the CPU.
    """
    from diffusers.hooks.group_offloading import GroupOffloadingHook

    for sub in module.modules():
        registry = getattr(sub, "_diffusers_hook", None)
        for hook in getattr(registry, "hooks", {}).values():
            if isinstance(hook, GroupOffloadingHook):
                return torch.device(hook.group.onload_device)
        device = getattr(getattr(sub, "_hf_hook", None), "execution_device", None)
        if device is not None:
            return torch.device(device)
    for tensor in _tensors(module):
        return tensor.device
    return torch.device("cpu")


def onload(module: torch.nn.Module) -> None:
    """Bring a model-offloaded ``module`` to its execution device before calling it other than by ``forward``.

    What diffusers' ``apply_forward_hook`` does before ``AutoencoderKL.encode``; a no-op for a
    module without an accelerate hook (group-offloading hooks sit on the submodules, which
    onload themselves).
    """
    hook = getattr(module, "_hf_hook", None)
    if hook is not None and hasattr(hook, "pre_forward"):
        hook.pre_forward(module)


def is_offloaded(module: torch.nn.Module) -> bool:
    """True when an accelerate or diffusers offload hook manages ``module`` (or one of its submodules)."""
    from accelerate.hooks import CpuOffload
    from diffusers.hooks.group_offloading import GroupOffloadingHook

    for sub in module.modules():
        if isinstance(getattr(sub, "_hf_hook", None), CpuOffload):
            return True
        registry = getattr(sub, "_diffusers_hook", None)
        if any(isinstance(h, GroupOffloadingHook) for h in getattr(registry, "hooks", {}).values()):
            return True
    return False


def _tensors(module: torch.nn.Module) -> Iterator[torch.Tensor]:
    yield from module.parameters()
    yield from module.buffers()


def same_device(a: torch.device | str, b: torch.device | str) -> bool:
    """``cuda`` and ``cuda:0`` are the same device (an index-less device means index 0)."""
    a, b = torch.device(a), torch.device(b)
    return a.type == b.type and (a.index or 0) == (b.index or 0)


def check_placement(inv: Inventory, device: torch.device) -> None:
    """Raise :class:`PlacementError` when a module that no offload hook manages is not on ``device``.

    This is what keeps a pipeline from silently mixing devices (a component left on the CPU
    while the backend runs on a GPU, or the reverse).
    """
    for name, module in inv.all().items():
        if is_offloaded(module):
            continue
        stray = {d for d in {t.device for t in _tensors(module)} if not same_device(d, device)}
        if stray:
            raise PlacementError(
                f"{name} ({type(module).__name__}) has weights on {sorted(map(str, stray))} but the pipeline runs "
                f"on {device}. Place the whole pipeline with pipe.to({str(device)!r}) (or enable offload on it), "
                "not one component."
            )


# ---------------------------------------------------------------------- placement
def move(inv: Inventory, device: torch.device | str | None, dtype: torch.dtype | None) -> None:
    """Every module in ``inv`` to ``device`` and/or floating weights to ``dtype`` (None keeps that)."""
    if device is None and dtype is None:
        return
    offloaded = [name for name, module in inv.all().items() if is_offloaded(module)]
    if offloaded:
        raise PlacementError(
            f"Offload hooks manage {offloaded[:3]}{'...' if len(offloaded) > 3 else ''}; moving them now would "
            "fight the hooks. Call pipe.disable_offload() first, then pipe.to(...)."
        )
    for module in inv.all().values():
        module_to(module, device, dtype)


def module_to(module: torch.nn.Module, device: torch.device | str | None, dtype: torch.dtype | None) -> None:
    """``module.to`` with only the arguments given: diffusers' ``ModelMixin.to`` (0.42) logs a float32
    warning whenever ``dtype`` is passed, even as None, so a move without a cast must not pass it."""
    options = {k: v for k, v in (("device", device), ("dtype", dtype)) if v is not None}
    if options:
        module.to(**options)


def enable_model_offload(inv: Inventory, device: torch.device) -> list[Any]:
    """accelerate CPU offload on every model of ``inv`` (resident modules go to ``device``); returns the hooks.

    Each model is moved to the CPU and gets an exclusive ``CpuOffload`` hook (see
    :func:`exclusive_cpu_offload`): it comes to ``device`` when it runs, after the other
    models left it.
    """
    from accelerate.hooks import UserCpuOffloadHook, add_hook_to_module

    hook_class = exclusive_cpu_offload()
    hooks: list[Any] = []
    for module in inv.models.values():
        module.to("cpu")
        hook = hook_class(device, hooks)
        add_hook_to_module(module, hook, append=True)
        hooks.append(UserCpuOffloadHook(module, hook))
    for module in inv.resident.values():
        module.to(device)
    return hooks


@functools.cache
def exclusive_cpu_offload() -> type:
    """accelerate's ``CpuOffload`` whose ``pre_forward`` first offloads every other model of its group.

    diffusers chains hooks in a fixed ``model_cpu_offload_seq`` (each hook offloads the
    previous model); a composed pipeline calls its models in an order that depends on its
    components, so here each hook offloads whichever other models are on the device: one
    model at a time is there, whatever the order. (A class built on first use, so importing
    smg_sdk does not import accelerate.)
    """
    from accelerate.hooks import CpuOffload

    class ExclusiveCpuOffload(CpuOffload):
        def __init__(self, execution_device: torch.device, group: list[Any]):
            super().__init__(execution_device=execution_device)
            self.group = group
            self.onloads = 0
            """How many times this hook's model was brought in (for tests and logs)."""

        def pre_forward(self, module: torch.nn.Module, *args: Any, **kwargs: Any):
            for other in self.group:
                # the first parameter tells, as in accelerate's CpuOffload (a model moves whole)
                if other.model is not module and next(other.model.parameters()).device.type != "cpu":
                    other.offload()
            self.onloads += 1
            return super().pre_forward(module, *args, **kwargs)

    return ExclusiveCpuOffload


def enable_group_offload(inv: Inventory, onload_device: torch.device, offload_device: torch.device, *,
                         offload_type: str, num_blocks_per_group: int | None, use_stream: bool,
                         denoisers: Iterable[str]) -> None:
    """diffusers' ``apply_group_offloading`` on every model; resident modules go to ``onload_device``.

    The models named in ``denoisers`` get ``offload_type``; the others ``"leaf_level"``, whose
    hooks fire whichever method calls the model (``vae.decode``, an MLLM's backbone, CLIP's
    ``get_image_features``): a ``"block_level"`` group of a model's loose layers onloads only
    on the model's own ``forward``.
    """
    from diffusers.hooks import apply_group_offloading

    if offload_type not in GROUP_OFFLOAD_TYPES:
        raise PlacementError(f"offload_type must be one of {GROUP_OFFLOAD_TYPES}, not {offload_type!r}.")
    if num_blocks_per_group is not None and (isinstance(num_blocks_per_group, bool)
                                             or not isinstance(num_blocks_per_group, int) or num_blocks_per_group < 1):
        raise PlacementError(f"num_blocks_per_group must be a positive integer, not {num_blocks_per_group!r}.")
    backend = getattr(torch, onload_device.type, None)
    if use_stream and (onload_device.type == "cpu" or not hasattr(backend, "Stream")):  # diffusers' own test
        raise PlacementError(f"use_stream=True overlaps transfers on {onload_device.type} streams, which the onload "
                             "device does not have; pass use_stream=False (or an accelerator as onload_device).")
    denoisers = set(denoisers)
    for name, module in inv.models.items():
        kind = offload_type if name in denoisers else "leaf_level"
        blocks = (num_blocks_per_group or 1) if kind == "block_level" else None
        module.to(offload_device)
        apply_group_offloading(module, onload_device=onload_device, offload_device=offload_device,
                               offload_type=kind, num_blocks_per_group=blocks, use_stream=use_stream)
    for module in inv.resident.values():
        module.to(onload_device)


_GROUP_HOOK_NAMES = ("group_offloading", "layer_execution_tracker", "lazy_prefetch_group_offloading")
"""The names diffusers' group offloading registers its hooks under (diffusers.hooks.group_offloading)."""


def disable_offload(modules: Iterable[torch.nn.Module]) -> None:
    """Remove accelerate and diffusers offload hooks from ``modules`` (weights stay where the hooks left them)."""
    from accelerate.hooks import remove_hook_from_module
    from diffusers.hooks import HookRegistry

    for module in modules:
        remove_hook_from_module(module, recurse=True)
        for sub in module.modules():
            if hasattr(sub, "_diffusers_hook"):
                registry = HookRegistry.check_if_exists_or_initialize(sub)
                for name in _GROUP_HOOK_NAMES:
                    registry.remove_hook(name, recurse=False)
