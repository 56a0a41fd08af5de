"""The conformance kit for plugin authors: hypothesis strategies and contract checks.

>>> from smg_sdk.testing import check_aggregator, strategies
>>> check_aggregator(MyAggregator(), conditions, request)

Each ``check_<kind>`` runs a component the way the pipeline does and asserts it honours the
contract of its kind: shapes and dtypes, determinism, no mutation of its inputs, a
JSON-serialisable config and, for ``torch.nn.Module`` components, a safetensors save/load
round trip that reproduces the output. It raises ``AssertionError`` with a message saying
which rule was broken. Needs ``hypothesis`` (``pip install "smg-sdk[test]"``) for the
strategies only.
"""

from .checks import (
    check_aggregator,
    check_encoder,
    check_planner,
    check_rule,
    check_schedule,
    check_verifier,
)

__all__ = [
    "check_aggregator", "check_encoder", "check_planner", "check_rule", "check_schedule", "check_verifier",
    "strategies",
]


def __getattr__(name: str):
    if name == "strategies":  # imports hypothesis only when asked for
        import importlib

        return importlib.import_module(f"{__name__}.strategies")
    raise AttributeError(name)
