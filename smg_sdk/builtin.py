"""The core's own plugin: loaded first, through the same hook as every other plugin.

It registers the backend-neutral components (rules, the constant schedule, the SubjectWorld
judge) and wires in the in-tree FLUX backend (:mod:`smg_sdk.backends.flux.plugin`): this hook
is the one place in the core that names it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .plugins.hookspecs import hookimpl

if TYPE_CHECKING:  # pragma: no cover
    from .plugins.registry import Registry


@hookimpl
def smg_register(registry: "Registry") -> None:
    """Components the core itself provides."""
    from .attention.rules import BlockRule, IsolateReferencesRule, StreamBiasRule
    from .backends.flux import plugin as flux_plugin
    from .eval.judge import SubjectWorldJudge
    from .schedules import ConstantSchedule

    registry.add_judge("subjectworld", SubjectWorldJudge)
    flux_plugin.register(registry)
    registry.add_rule("block", BlockRule)
    registry.add_rule("isolate-references", IsolateReferencesRule)
    registry.add_rule("stream-bias", StreamBiasRule)
    registry.add_schedule("constant", ConstantSchedule)


@hookimpl
def smg_register_commands(subparsers) -> None:
    """``smg train subjectworld`` (the registered recipes; :mod:`smg_sdk.cli_subjectworld`), ``smg plan-memory``
    (:mod:`smg_sdk.backends.flux.cli`), ``smg convert-weights`` (:mod:`smg_sdk.convert`)."""
    from .backends.flux.cli import add_plan_memory_parser
    from .cli_subjectworld import add_train_parser
    from .convert import add_convert_parser

    add_train_parser(subparsers)
    add_convert_parser(subparsers)
    add_plan_memory_parser(subparsers)
