"""Understanding policies and effects: policy trees, distillation, effect trees, segments."""

from pexkit.explain.distill import CompiledDistilledPolicy, DistilledPolicy, distill
from pexkit.explain.effecttree import EffectLeaf, EffectTree, distill_effects
from pexkit.explain.policytree import CompiledTree, PolicyLeaf, PolicyTree, fit_policy_tree
from pexkit.explain.segments import Segments, feature_importance, segments

__all__ = [
    "CompiledDistilledPolicy",
    "CompiledTree",
    "DistilledPolicy",
    "EffectLeaf",
    "EffectTree",
    "PolicyLeaf",
    "PolicyTree",
    "Segments",
    "distill",
    "distill_effects",
    "feature_importance",
    "fit_policy_tree",
    "segments",
]
