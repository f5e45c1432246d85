"""On the simulator, with the oracle: the estimated front is close to the true one."""

import numpy as np
import pytest

import pexkit as px
from pexkit.evaluation.kernels import batch_sums
from pexkit.optimize import PolicySpace, hypervolume, is_non_dominated
from pexkit.policy.linear import _batch_params

pytestmark = pytest.mark.slow


def oracle_objectives(sim, policies, tau):
    """True lifts (goal-signed) of policies applied to effects ``tau``."""
    signs = np.asarray(sim.spec.signs)
    sw, const = _batch_params(sim.spec, policies)
    sums = batch_sums(tau, sim.true_means[:, :, :3], sw, const)
    return sums[:, 6:9] / tau.shape[0] * signs


@pytest.fixture(scope="module")
def setting():
    sim = px.simulate("notifications", n_units=50_000, seed=21)
    model = px.EffectModel(n_folds=3, base_params={"n_estimators": 100, "min_child_samples": 50}).fit(sim.data)
    return sim, model


def test_front_keeps_90_percent_of_the_oracle_hypervolume(setting, record_property):
    sim, model = setting
    front = px.optimize_policies(model, sim.data, method="sobol", budget=1500, random_state=0)
    mask = front.on_front
    ours = oracle_objectives(sim, [front.policies[i] for i in np.flatnonzero(mask)], model.effects_)
    true_tau = sim.true_cate()
    space = PolicySpace.from_effects(sim.spec, true_tau)
    rng = np.random.default_rng(0)
    U = rng.uniform(size=(3000, space.dim))
    oracle = oracle_objectives(sim, space.policies(U), true_tau)
    singles = np.array([
        sim.oracle_value(np.full(sim.data.n_units, k), sim.spec.outcome_names)["lift"].to_numpy()
        for k in range(3)
    ]) * np.asarray(sim.spec.signs)
    oracle = np.vstack([oracle, singles])
    ref = singles.min(axis=0)  # the worst single treatment per outcome (documented default)
    hv_ours = hypervolume(ours, ref)
    hv_oracle = hypervolume(oracle[is_non_dominated(oracle)], ref)
    record_property("hv_ratio", hv_ours / hv_oracle)
    assert hv_ours >= 0.9 * hv_oracle


def test_biases_cost_no_front(setting, record_property):
    # the biased class contains the unbiased one (biases 0), so at equal budget its front
    # may only trail by the search's sampling noise in two more dimensions. Measured on this
    # model (early-stopped outcome models, 2026-11-29): 0.990 of the unbiased hypervolume at
    # 1,500 evaluations, 0.999 at 6,000 (with the earlier 100-round models, biases widened
    # it); a broken bias dimension (wrong bounds, ignored biases) loses far more
    sim, model = setting
    with_b = px.optimize_policies(model, sim.data, method="sobol", budget=1500, biases=True)
    without = px.optimize_policies(model, sim.data, method="sobol", budget=1500, biases=False)
    hv_b, hv_nb = with_b.hypervolume(), without.hypervolume()
    record_property("hv_biases", hv_b)
    record_property("hv_no_biases", hv_nb)
    assert hv_b >= 0.98 * hv_nb
    # and the two searches differ in what they search: finite biases only where asked for
    # (both fronts hold the single-arm baselines, written as policies with 1e9 biases)
    def finite_biases(front):
        return [b for b in (np.abs(p.bias_matrix).max() for p in front.policies) if 0 < b < 1e6]

    assert len(finite_biases(with_b)) > 100 and finite_biases(without) == []
