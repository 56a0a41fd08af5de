"""Issue 11's claims table as data: the rows ``benchmarks/subjectworld.py`` measures, and those it cannot.

Each :class:`Row` is one line of the table: the issue's group, a label, the preset it runs
(a registered name; plugin presets are resolved through the registry, never imported), the
preset's options (:attr:`WorldEvalConfig.options <smg_sdk.eval.world_eval.WorldEvalConfig>`),
the evaluation flags, the subject counts it is measured at, and the paper claim it tests.
Each :class:`NotMeasured` is a variant of the issue's table that no preset can run today, with
the reason. :func:`weights_of` says, from the files present, what weights a row's method runs
with, so the table never presents seeded initial weights as the paper's trained method.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

GROUPS = ("calibration", "reference LoRA", "Squeeze: aggregation", "Squeeze: schedule", "MUSIC: planning",
          "MUSIC: test-time scaling", "AlignGen", "composed")
"""The groups of issue 11's table, in its order."""

ALL_COUNTS = (1, 2, 3, 4)
MUSIC_COUNTS = (3, 4)
"""MUSIC's claim is about k >= 3."""

SCENE_JUDGE = {"verifier": "scene-judge", "verifier_options": {"judge": "subjectworld"}}
"""``music-tiny`` ranking its candidates with the SubjectWorld oracle (the registered ``subjectworld`` judge)."""

CLAIM_DLA = "DLA beats last-layer and fixed-layer conditioning on identity and instruction"
CLAIM_SCHEDULE = "multi-stage lowers copy-paste without losing identity"
CLAIM_PLAN = "planning cuts omission at k >= 3 by >= 10 points and lowers blending"
CLAIM_TTS = "more candidates, better scores, at the measured cost"
CLAIM_COMPOSED = "composed is best overall, or the note says which component hurts"
CLAIM_ALIGN = ("the baseline loses identity on misaligned prompts; S* + DEM recover >= 5 points of it; "
               "the mask adds on top")


@dataclass(frozen=True)
class Row:
    """One measured line of the claims table (see the module docstring)."""

    key: str
    """What ``--rows`` selects it by."""
    group: str
    label: str
    preset: str
    claim: str = "-"
    options: dict[str, Any] = field(default_factory=dict)
    no_references: bool = False
    candidates: int = 1
    subjects: tuple[int, ...] = ALL_COUNTS
    cost_baseline: str | None = None
    """Key of the row whose seconds per request this row's are divided by (same k), or None."""
    aligned: bool = False
    """True: the aligned set (every subject its class's typical identity; ``WorldEvalConfig.aligned``)."""

    def settings(self) -> dict[str, Any]:
        """Everything that decides this row's images, for the report and to share identical runs."""
        return {"preset": self.preset, "options": self.options, "no_references": self.no_references,
                "candidates": self.candidates, "aligned": self.aligned}


@dataclass(frozen=True)
class NotMeasured:
    """A variant of the issue's table that cannot run today, and why."""

    group: str
    label: str
    claim: str
    reason: str


def _squeeze(key: str, label: str, group: str = "Squeeze: aggregation", claim: str = CLAIM_DLA,
             **options: Any) -> Row:
    return Row(f"squeeze:{key}", group, label, "squeeze-tiny", claim, options)


ALIGNGEN_VARIANTS = ((True, True), (True, False), (False, True), (False, False))
"""``(sstar_dem, mask)`` of the AlignGen rows: the paper's method, without the mask, without S* + DEM, neither."""


def _aligngen(sstar_dem: bool, mask: bool, aligned: bool) -> Row:
    """``aligngen-tiny`` of one variant on the misaligned (held-out identities) or aligned (typical) prompts;
    its key names the variant as its shipped weights folder does (``aligngen:sstar-dem-mask:aligned``)."""
    from smg_plugins.aligngen.weights import variant_name

    label = {(True, True): "S* + DEM + selective mask", (True, False): "S* + DEM, no mask",
             (False, True): "no S* + DEM, selective mask", (False, False): "no S* + DEM, no mask (baseline)"}
    prompts = "aligned" if aligned else "misaligned"
    return Row(f"aligngen:{variant_name(sstar_dem, mask)}:{prompts}", "AlignGen",
               f"{label[sstar_dem, mask]}, {prompts} prompts", "aligngen-tiny", CLAIM_ALIGN,
               {"sstar_dem": sstar_dem, "mask": mask}, aligned=aligned)


def _scaling(n: int) -> Row:
    return Row(f"music:tts-{n}", "MUSIC: test-time scaling", f"N = {n}, oracle as scene-judge", "music-tiny",
               CLAIM_TTS, dict(SCENE_JUDGE), candidates=n,
               cost_baseline=None if n == 1 else "music:tts-1")


def _composed(key: str, label: str, **options: Any) -> Row:
    """``composed-tiny`` with every method, or with one left out (``squeeze=False``...): which one hurts."""
    return Row(f"composed:{key}", "composed", label, "composed-tiny", CLAIM_COMPOSED, options)


ROWS: tuple[Row, ...] = (
    Row("ground-truth", "calibration", "ground truth (the target renders)", "ground-truth"),
    Row("vae-round-trip", "calibration", "ground truth through the tiny VAE (encoded, decoded)", "vae-round-trip"),
    Row("copy-paste", "calibration", "copy-paste (references pasted as they are)", "copy-paste"),
    Row("tiny:text-only", "calibration", "text-only (`tiny`, no references)", "tiny", no_references=True),
    Row("tiny", "reference LoRA", "reference LoRA (the `tiny` preset)", "tiny"),
    _squeeze("last-layer", "MLLM last layer", aggregator="last-layer"),
    _squeeze("fixed-layers", "fixed layers (1/3, 2/3, last)", aggregator="fixed-layers"),
    _squeeze("lap", "LAP", aggregator="lap"),
    _squeeze("dla", "DLA (multi-stage schedule, the preset's default)", aggregator="dla"),
    _squeeze("dla-constant", "DLA + VAE identity, constant schedule", "Squeeze: schedule", CLAIM_SCHEDULE,
             aggregator="dla", schedule="constant"),
    _squeeze("dla-multistage", "DLA + VAE identity, multi-stage schedule (the DLA row's run)", "Squeeze: schedule",
             CLAIM_SCHEDULE, aggregator="dla"),
    Row("music:no-plan", "MUSIC: planning", "no plan (the `tiny` preset)", "tiny", CLAIM_PLAN, subjects=MUSIC_COUNTS),
    Row("music:heuristic", "MUSIC: planning", "heuristic plan (`music-tiny`)", "music-tiny", CLAIM_PLAN,
        subjects=MUSIC_COUNTS),
    Row("music:trained-planner", "MUSIC: planning", "trained planner plan (`music-tiny`, trained_planner)",
        "music-tiny", CLAIM_PLAN, {"trained_planner": True}, subjects=MUSIC_COUNTS),
    *(_scaling(n) for n in (1, 2, 4, 8)),
    *(_aligngen(sstar_dem, mask, aligned) for sstar_dem, mask in ALIGNGEN_VARIANTS for aligned in (False, True)),
    _composed("all", "AlignGen + Squeeze + MUSIC (`composed-tiny`)"),
    _composed("no-squeeze", "composed without Squeeze (AlignGen + MUSIC)", squeeze=False),
    _composed("no-music", "composed without MUSIC (AlignGen + Squeeze)", music=False),
    _composed("no-aligngen", "composed without AlignGen (`tiny` + Squeeze + MUSIC)", aligngen=False),
)
"""Every measured row, in table order."""

NOT_MEASURED: tuple[NotMeasured, ...] = ()
"""The variants of the issue's table no preset runs today."""


def by_key() -> dict[str, Row]:
    """The rows by ``--rows`` key."""
    return {row.key: row for row in ROWS}


def groups_covered() -> set[str]:
    """Groups with a measured row or a listed reason why not."""
    return {row.group for row in ROWS} | {item.group for item in NOT_MEASURED}


TRAINED, UNTRAINED, NO_WEIGHTS = "trained", "untrained", "no weights"
"""The states :func:`weights_of` reports for a row's method."""


def weights_of(row: Row) -> tuple[str, str]:
    """``(state, description)`` of the weights ``row``'s method runs with, read from the files present.

    ``state``: :data:`UNTRAINED` when the method's own components start from seeded initial
    weights, :data:`NO_WEIGHTS` for the baselines and the heuristic planner (nothing to learn),
    else :data:`TRAINED`.
    """
    if row.preset in ("ground-truth", "copy-paste"):
        return NO_WEIGHTS, "no model"
    if row.preset == "vae-round-trip":
        return NO_WEIGHTS, "the `tiny` preset's trained VAE only: the ceiling of any model drawing through it"
    if row.preset == "squeeze-tiny":
        return _squeeze_weights(row.options.get("aggregator", "dla"))
    if row.preset == "music-tiny":
        return _music_weights(row)
    if row.preset == "aligngen-tiny":
        return _aligngen_weights(row.options.get("sstar_dem", True), row.options.get("mask", True))
    if row.preset == "tiny":
        return TRAINED, _tiny_weights(row.no_references)
    if row.preset == "composed-tiny":
        return _composed_weights(row.options)
    return NO_WEIGHTS, "not known to this table"


def _tiny_weights(text_only: bool) -> str:
    from smg_sdk.presets.tiny import tiny_subject_lora_path

    base = "SubjectWorld-trained tiny FLUX (partly: identity not learned, README)"
    if text_only:
        return base
    return base + (" + SubjectWorld-trained subject adapter" if tiny_subject_lora_path() else " (no subject adapter)")


def _squeeze_weights(aggregator: str) -> tuple[str, str]:
    from smg_plugins.squeeze_mllm.preset import shipped_weights, weight_files

    trained = [what for what, file in zip(("aggregator", "identity LoRA"),
                                          weight_files(shipped_weights(aggregator), aggregator)) if file.is_file()]
    if not trained:
        return UNTRAINED, ("untrained: seeded initial aggregator, zero identity LoRA, random tiny Qwen2.5-VL, on the "
                       "SubjectWorld-trained tiny FLUX")
    return TRAINED, (f"shipped {' and '.join(trained)} (plugins/squeeze_mllm/weights/{aggregator}/), random tiny "
                     "Qwen2.5-VL")


def _aligngen_weights(sstar_dem: bool, mask: bool) -> tuple[str, str]:
    from smg_plugins.aligngen.weights import WEIGHTS, variant_name, weight_files

    folder = WEIGHTS / variant_name(sstar_dem, mask)
    parts = "S*, DEM and reference LoRA" if sstar_dem else "reference LoRA (no S*, no DEM)"
    base = (", random tiny SigLIP/Redux" if sstar_dem else "") + ", on the SubjectWorld-trained tiny FLUX"
    if not all(file.is_file() for file in weight_files(folder, sstar_dem).values()):
        seeded = "seeded initial S* and DEM, zero reference LoRA" if sstar_dem else "zero reference LoRA"
        return UNTRAINED, f"untrained: {seeded}{base}"
    return TRAINED, (f"shipped {parts} trained {'with' if mask else 'without'} the mask "
                     f"(plugins/aligngen/weights/{folder.name}/){base}")


def _music_weights(row: Row) -> tuple[str, str]:
    from smg_plugins.music.preset import tiny_planner_path

    base = "on the SubjectWorld-trained tiny FLUX + subject adapter"
    if row.options.get("trained_planner"):
        tiny_planner_path()  # raises if the shipped planner is missing
        return TRAINED, (f"planner trained on SubjectWorld plans (plugins/music/weights/planner/; its valid-plan rate "
                         f"and layout agreement: plugins/music/README.md), {base}")
    return NO_WEIGHTS, (f"heuristic plan (the random tiny Qwen2.5-VL planner's plans fail validation and fall back to "
                        f"it), {base}")


def _composed_weights(options: dict[str, Any]) -> tuple[str, str]:
    """The weights of each included method's own row; the composition itself was never trained together."""
    parts = [(name, weights_of(row)[0]) for name, on, row in (
        ("AlignGen's S* + DEM + mask variant", options.get("aligngen", True), _aligngen(True, True, False)),
        ("Squeeze's DLA aggregator (not its identity LoRA)", options.get("squeeze", True),
         _squeeze("dla", "DLA", aggregator="dla")),
        ("MUSIC's heuristic plan", options.get("music", True), Row("m", "MUSIC: planning", "-", "music-tiny")),
        ("the `tiny` reference LoRA", not options.get("aligngen", True), Row("t", "reference LoRA", "-", "tiny"))) if on]
    state = UNTRAINED if any(state == UNTRAINED for _, state in parts) else TRAINED
    said = ", ".join(f"{name} ({state})" for name, state in parts)
    return state, f"each method's own shipped weights, trained separately on the frozen tiny FLUX, never together: {said}"


__all__ = ["ALIGNGEN_VARIANTS", "GROUPS", "NOT_MEASURED", "NO_WEIGHTS", "NotMeasured", "ROWS", "Row", "TRAINED", "UNTRAINED", "by_key",
           "groups_covered", "weights_of"]

