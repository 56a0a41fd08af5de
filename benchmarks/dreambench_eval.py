"""DreamBench metrics (DINO, CLIP-I, CLIP-T) per preset, in one run.

    python benchmarks/dreambench_eval.py --dreambench ../shared/dreambench \
        [--presets tiny squeeze-tiny aligngen-tiny] [--prompts 3] [--clip DIR] [--dino DIR]

For each subject, the first ``--prompts`` prompts of its list are generated from reference 0
and scored against all its references. The tiny presets' random weights make the numbers a
plumbing check; with trained weights and real CLIP/DINO folders this is the paper's protocol
(Squeeze-MLLM and AlignGen report DreamBench numbers).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dreambench", default=str(Path(__file__).resolve().parents[2] / "shared" / "dreambench"))
    parser.add_argument("--presets", nargs="+", default=["tiny", "squeeze-tiny", "aligngen-tiny"])
    parser.add_argument("--prompts", type=int, default=3)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--clip", default=None, help="local CLIP folder (default: the tiny one)")
    parser.add_argument("--dino", default=None, help="local DINO folder (default: the tiny one)")
    args = parser.parse_args()

    from smg_sdk import SubjectPipeline
    from smg_sdk.eval import SubjectMetrics, load_dreambench

    bench = load_dreambench(args.dreambench)
    metrics = SubjectMetrics(args.clip, args.dino)
    print(f"DreamBench at {bench.root}: {len(bench.subjects)} subjects x {args.prompts} prompts")
    print(f"{'preset':<16} {'DINO':>7} {'CLIP-I':>7} {'CLIP-T':>7} {'s/image':>8}")
    for preset in args.presets:
        pipe = SubjectPipeline.from_preset(preset)
        pipe.set_progress_bar_config(disable=True)
        rows, seconds = [], []
        for subject in bench.subjects:
            references = [subject.subject(i) for i in range(len(subject.images))]
            for prompt in bench.prompts_for(subject)[: args.prompts]:
                start = time.perf_counter()
                image = pipe(prompt, [references[0]], seed=0, num_inference_steps=args.steps).images[0]
                seconds.append(time.perf_counter() - start)
                text = prompt.replace("<1>", subject.class_word)
                rows.append(metrics.score(image, [r.image for r in references], text))
        mean = lambda field: statistics.mean(getattr(r, field) for r in rows)  # noqa: E731
        print(f"{preset:<16} {mean('dino'):>7.3f} {mean('clip_i'):>7.3f} {mean('clip_t'):>7.3f} "
              f"{statistics.median(seconds):>8.2f}")


if __name__ == "__main__":
    main()
