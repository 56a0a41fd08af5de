"""DreamBench in its original layout: ``images/<subject>/<NN>.jpg`` + ``prompts_and_classes.txt``.

The prompts file lists every subject's class and two prompt lists written as Python
(``'a {0} {1} in the snow'.format(unique_token, class_token)``): object prompts, and
live-subject prompts for animals. Here a prompt names the subject with the SDK's
placeholder: ``"a <1> in the snow"``, with the class word on the :class:`Subject`.
Subjects whose image folder is absent (a subset) are left out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from ..errors import DataLookupError, ModelLoadError
from ..types import Subject

LIVE_CLASSES = {"dog", "cat"}
"""DreamBench evaluates animals with the live-subject prompt list, everything else with the object list."""

_TEMPLATE = re.compile(r"""^'(.*)'\.format\(unique_token, class_token\),?$""")


@dataclass
class DreamBenchSubject:
    name: str
    class_word: str
    images: list[Path]

    @property
    def live(self) -> bool:
        return self.class_word in LIVE_CLASSES

    def subject(self, index: int = 0) -> Subject:
        """Reference ``index`` as an SDK subject (RGB, class word attached)."""
        return Subject(Image.open(self.images[index]).convert("RGB"), self.class_word)


@dataclass
class DreamBench:
    root: Path
    subjects: list[DreamBenchSubject]
    object_prompts: list[str] = field(default_factory=list)
    live_prompts: list[str] = field(default_factory=list)

    def prompts_for(self, subject: DreamBenchSubject) -> list[str]:
        """The subject's 25 prompts with ``<1>`` in place of "sks <class>"."""
        return list(self.live_prompts if subject.live else self.object_prompts)

    def get(self, name: str) -> DreamBenchSubject:
        for s in self.subjects:
            if s.name == name:
                return s
        raise DataLookupError(f"No DreamBench subject {name!r}; have {[s.name for s in self.subjects]}.")


def _parse(text: str) -> tuple[dict[str, str], list[str], list[str]]:
    classes: dict[str, str] = {}
    lists: list[list[str]] = []
    section = None
    for raw in text.splitlines():
        line = raw.strip()
        if line == "Classes":
            section = "classes"
        elif line.startswith("prompt_list"):
            section = "prompts"
            lists.append([])
        elif line == "]":
            section = None
        elif section == "classes" and "," in line and line != "subject_name,class":
            name, cls = line.split(",", 1)
            classes[name.strip()] = cls.strip()
        elif section == "prompts" and (m := _TEMPLATE.match(line)):
            lists.append(lists.pop() + [m.group(1).replace("{0} {1}", "<1>")])
    if not classes or len(lists) != 2:
        raise ModelLoadError("prompts_and_classes.txt does not have the DreamBench layout (classes + two prompt lists).")
    return classes, lists[0], lists[1]


def load_dreambench(root: str | Path) -> DreamBench:
    """Load a DreamBench folder (the original ``dataset/`` layout, or a subset of it)."""
    root = Path(root)
    prompts_file = root / "prompts_and_classes.txt"
    if not prompts_file.is_file():
        raise ModelLoadError(f"{root} has no prompts_and_classes.txt; point at a DreamBench dataset folder.")
    classes, object_prompts, live_prompts = _parse(prompts_file.read_text())
    images_root = root / "images" if (root / "images").is_dir() else root
    subjects = []
    for name, cls in classes.items():
        folder = images_root / name
        files = sorted(p for p in folder.glob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png")) if folder.is_dir() else []
        if files:
            subjects.append(DreamBenchSubject(name, cls, files))
    if not subjects:
        raise ModelLoadError(f"No subject image folders under {images_root}.")
    return DreamBench(root, subjects, object_prompts, live_prompts)
