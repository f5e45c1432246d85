import numpy as np
import pytest

import pexkit as px
from pexkit.explain import distill


def test_distill_contract(sim, fitted):
    policy = px.LinearPolicy(sim.spec, {"engagement": 1.0, "unsubscribe": 10.0, "revenue": 1.0})
    tree = distill(policy, fitted, sim.data, max_depth=3)
    black = policy.choose(fitted.effects_)
    chosen = tree.choose(sim.data)
    np.testing.assert_array_equal(chosen, tree.choose(sim.frame))
    assert tree.fidelity == pytest.approx((chosen == black).mean())
    assert tree.fidelity_ci[0] < tree.fidelity < tree.fidelity_ci[1]
    assert tree.value_kept_ci[0] < tree.value_kept < tree.value_kept_ci[1]
    text = str(tree)
    assert "fidelity" in text and "if " in text
    # deeper trees imitate at least as much utility as shallower ones
    shallow = distill(policy, fitted, sim.data, max_depth=1)
    utilities = policy.utilities(fitted.effects_)
    rows = np.arange(len(chosen))
    assert utilities[rows, chosen].sum() >= utilities[rows, shallow.choose(sim.data)].sum() - 1e-9


def test_distill_rejects_non_policies(fitted, sim):
    with pytest.raises(px.InvalidParameterError, match="LinearPolicy"):
        distill("policy", fitted, sim.data)
