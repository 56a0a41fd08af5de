"""An AlignGen run's weights folder: what ``smg train subjectworld --recipe aligngen`` writes and
``aligngen-tiny(weights=DIR)`` reads.

Layout (safetensors and JSON only, nothing pickled)::

    aligngen.json                                   {"sstar_dem": bool, "mask": bool}: the variant trained
    sstar.safetensors                               S* (LearnableToken: "t5", "clip", "initialized"); sstar_dem only
    dem.safetensors                                 the DEM's state dict; sstar_dem only
    aligngen-ref/pytorch_lora_weights.safetensors   the reference LoRA as FluxBackend.save_adapter writes it

Shipped runs live in ``weights/<variant>/`` beside this module (:func:`variant_name`), one
folder per trained variant, as Squeeze ships one file per aggregator.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from smg_sdk import ConditionError, atomic_folder

if TYPE_CHECKING:  # pragma: no cover
    from smg_sdk import SubjectPipeline

WEIGHTS = Path(__file__).parent / "weights"
"""Where trained variants ship: ``WEIGHTS / variant_name(sstar_dem, mask)``."""
VARIANT_FILE = "aligngen.json"
LORA_FILE = "pytorch_lora_weights.safetensors"


def variant_name(sstar_dem: bool, mask: bool) -> str:
    """The shipped folder of a variant: ``sstar-dem-mask`` (the paper's), ``sstar-dem``, ``mask``, ``lora-only``."""
    parts = (["sstar-dem"] if sstar_dem else []) + (["mask"] if mask else [])
    return "-".join(parts) or "lora-only"


def weight_files(folder: str | Path, sstar_dem: bool, adapter: str = "aligngen-ref") -> dict[str, Path]:
    """The files of a weights folder for the variant (``sstar`` and ``dem`` only with ``sstar_dem``)."""
    folder = Path(folder)
    files = {"variant": folder / VARIANT_FILE, "lora": folder / adapter / LORA_FILE}
    if sstar_dem:
        files.update(sstar=folder / "sstar.safetensors", dem=folder / "dem.safetensors")
    return files


def read_variant(folder: str | Path) -> dict[str, bool]:
    """``{"sstar_dem": ..., "mask": ...}`` recorded in ``folder``; :class:`ConditionError` if missing or malformed."""
    file = Path(folder) / VARIANT_FILE
    try:
        recorded = json.loads(file.read_text())
    except (OSError, ValueError) as exc:
        raise ConditionError(f"aligngen-tiny weights={str(folder)!r}: cannot read {VARIANT_FILE} ({exc}); pass the "
                             "OUT/weights folder of `smg train subjectworld --recipe aligngen`.") from None
    if not isinstance(recorded, dict) or not all(isinstance(recorded.get(k), bool) for k in ("sstar_dem", "mask")):
        raise ConditionError(f"aligngen-tiny weights={str(folder)!r}: {VARIANT_FILE} must hold "
                             '{"sstar_dem": true|false, "mask": true|false}.')
    return {"sstar_dem": recorded["sstar_dem"], "mask": recorded["mask"]}


def check_weights(folder: str | Path, sstar_dem: bool, adapter: str = "aligngen-ref") -> dict[str, Path]:
    """The variant's files in ``folder``, all present and of the variant asked for, else :class:`ConditionError`."""
    files = weight_files(folder, sstar_dem, adapter)
    trained = read_variant(folder)["sstar_dem"] if files["variant"].is_file() else sstar_dem
    if trained != sstar_dem:
        raise ConditionError(f"aligngen-tiny weights={str(folder)!r} were trained with sstar_dem="
                             f"{str(trained).lower()}; pass --option sstar_dem={str(trained).lower()} (or other weights).")
    missing = [str(path.relative_to(folder)) for path in files.values() if not path.is_file()]
    if missing:
        raise ConditionError(f"aligngen-tiny weights={str(folder)!r}: missing {', '.join(missing)}; pass the "
                             f"OUT/weights folder of an aligngen run trained with sstar_dem={str(sstar_dem).lower()}.")
    return files


def _state(module) -> dict[str, Any]:
    return {k: v.detach().contiguous() for k, v in module.state_dict().items()}


def sstar_and_dem(pipe: "SubjectPipeline") -> tuple[Any, Any] | None:
    """The pipeline's ``aligngen-text`` encoder and ``dem`` aggregator, or None if it has neither."""
    from .dem import DeviationExtractionModule
    from .text_encoder import AlignGenTextEncoder

    text = next((e for e in pipe.encoders if isinstance(e, AlignGenTextEncoder)), None)
    dem = next((a for a in pipe.aggregators if isinstance(a, DeviationExtractionModule)), None)
    return None if text is None and dem is None else (text, dem)


def write_weights(pipe: "SubjectPipeline", folder: str | Path, *, mask: bool, adapter: str = "aligngen-ref") -> Path:
    """Write the pipeline's trained AlignGen weights into ``folder`` atomically; returns ``folder``.

    ``mask``: whether the run trained with the ``aligngen-mask`` rule (recorded, with whether the
    pipeline has S* and the DEM)."""
    from safetensors.torch import save_file

    parts = sstar_and_dem(pipe)
    with atomic_folder(folder, kind="aligngen-weights") as staging:
        files = weight_files(staging, parts is not None, adapter)
        if parts is not None:
            save_file(_state(parts[0].token), str(files["sstar"]))
            save_file(_state(parts[1]), str(files["dem"]))
        pipe.backend.save_adapter(adapter, files["lora"].parent)
        files["variant"].write_text(json.dumps({"sstar_dem": parts is not None, "mask": bool(mask)}) + "\n")
    return Path(folder)


def load_sstar_and_dem(pipe: "SubjectPipeline", files: dict[str, Path]) -> None:
    """Load S* and the DEM of ``files`` (from :func:`check_weights`) into the pipeline's components."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    parts = sstar_and_dem(pipe)
    if parts is None or "sstar" not in files:
        return
    for module, key in ((parts[0].token, "sstar"), (parts[1], "dem")):
        try:
            module.load_state_dict(load_file(str(files[key])))
        except (SafetensorError, OSError, RuntimeError) as exc:
            raise ConditionError(f"aligngen-tiny weights: {str(files[key])!r} does not fit this pipeline's "
                                 f"{key} ({exc}); pass the folder aligngen training wrote.") from None


__all__ = ["VARIANT_FILE", "WEIGHTS", "check_weights", "load_sstar_and_dem", "read_variant", "sstar_and_dem", "variant_name",
           "weight_files", "write_weights"]
