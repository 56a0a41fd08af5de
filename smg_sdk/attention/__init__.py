"""Joint attention: layout and mask (masks), rules, and the FLUX attention processor."""

from .masks import JointAttentionMask, JointLayout, TokenGroup
from .rules import BlockRule, IsolateReferencesRule, StreamBiasRule

__all__ = ["BlockRule", "IsolateReferencesRule", "JointAttentionMask", "JointLayout", "StreamBiasRule", "TokenGroup"]
