#!/usr/bin/env python
"""Put trained weights into the embedded tiny preset (a data change, not a code change).

    python scripts/ship_tiny_preset.py --flux RUN/base/flux [--lora RUN/lora/adapter]

``--flux`` is the folder ``smg train subjectworld --recipe base`` wrote; its VAE, transformer
and T5 (weights and configs) replace those in ``smg_sdk/presets/tiny/flux/``. It must have been
trained from this preset: its tokenizers must be byte-identical to the shipped ones, since
token ids are what the trained embeddings are indexed by. ``--lora`` is the folder the
``reference-lora`` recipe wrote; its ``pytorch_lora_weights.safetensors`` becomes the preset's
subject adapter (``smg_sdk/presets/tiny/subject_lora/``). Each target folder is replaced
atomically. ``python scripts/build_tiny_preset.py`` brings the random weights back.
"""

from __future__ import annotations

import argparse
import filecmp
import json
import shutil
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
PRESET = REPO_ROOT / "smg_sdk" / "presets" / "tiny"
TRAINED = ("vae", "transformer", "text_encoder_2")


def _same_tokenizers(flux: Path) -> None:
    for name in ("tokenizer", "tokenizer_2"):
        shipped = PRESET / "flux" / name
        for file in shipped.iterdir():
            other = flux / name / file.name
            if not other.is_file() or not filecmp.cmp(file, other, shallow=False):
                sys.exit(f"{other} differs from the shipped {file}: train from this preset's folder "
                         "(smg train subjectworld --from smg_sdk/presets/tiny/flux).")


def ship_flux(flux: Path) -> None:
    """Copy the trained components of ``flux`` over the preset's, one folder at a time."""
    sys.path.insert(0, str(REPO_ROOT))
    from smg_sdk.atomic import atomic_folder

    _same_tokenizers(flux)
    for name in TRAINED:
        with atomic_folder(PRESET / "flux" / name) as staging:
            for file in (flux / name).iterdir():
                if file.suffix in (".json", ".safetensors"):
                    shutil.copy2(file, staging / file.name)
            _own_name(staging / "config.json", name)
        print(f"shipped {name} from {flux / name}")


def _own_name(config: Path, name: str) -> None:
    """A diffusers config records the folder it was saved from (``_name_or_path``): name the preset's
    folder, not the training run's, so no local run path ships."""
    data = json.loads(config.read_text())
    if "_name_or_path" in data:
        data["_name_or_path"] = f"smg_sdk/presets/tiny/flux/{name}"
        config.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def ship_lora(folder: Path) -> None:
    sys.path.insert(0, str(REPO_ROOT))
    from smg_sdk.atomic import atomic_folder

    source = folder / "pytorch_lora_weights.safetensors"
    if not source.is_file():
        sys.exit(f"{source} is missing: pass the folder the reference-lora recipe wrote (RUN/adapter).")
    with atomic_folder(PRESET / "subject_lora") as staging:
        shutil.copy2(source, staging / source.name)
    print(f"shipped the subject adapter from {source}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--flux", type=Path, help="folder written by the base recipe (RUN/flux)")
    parser.add_argument("--lora", type=Path, help="folder written by the reference-lora recipe (RUN/adapter)")
    args = parser.parse_args()
    if args.flux is None and args.lora is None:
        parser.error("pass --flux, --lora or both")
    if args.flux is not None:
        ship_flux(args.flux)
    if args.lora is not None:
        ship_lora(args.lora)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
