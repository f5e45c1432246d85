"""Fit EconML's and CausalML's T/X/DR learners (LightGBM, 100 trees) and report time and PEHE.

Runs inside .peers (see setup_peers.sh); prints one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

import numpy as np
import pandas as pd
from lightgbm import LGBMRegressor
from sklearn.dummy import DummyClassifier

warnings.filterwarnings("ignore")
PARAMS = {"n_estimators": 100, "num_leaves": 31, "learning_rate": 0.1, "verbose": -1}


def econml_effects(name: str, X, T, y, K):
    from econml.dr import DRLearner
    from econml.metalearners import TLearner, XLearner

    if name == "T":
        est = TLearner(models=LGBMRegressor(**PARAMS))
        est.fit(y, T, X=X)
    elif name == "X":
        est = XLearner(models=LGBMRegressor(**PARAMS), propensity_model=DummyClassifier())
        est.fit(y, T, X=X)
    else:
        est = DRLearner(
            model_propensity=DummyClassifier(),
            model_regression=LGBMRegressor(**PARAMS),
            model_final=LGBMRegressor(**PARAMS),
            cv=3,
        )
        est.fit(y, T, X=X)
    return np.column_stack([est.effect(X, T0=0, T1=k) for k in range(1, K)])


def causalml_effects(name: str, X, T, y, K):
    from causalml.inference.meta import BaseDRRegressor, BaseTRegressor, BaseXRegressor

    labels = np.array(["control"] + [f"t{k}" for k in range(1, K)])[T]
    p = {f"t{k}": np.full(len(y), 1.0 / K) for k in range(1, K)}
    if name == "T":
        est = BaseTRegressor(learner=LGBMRegressor(**PARAMS), control_name="control")
        est.fit(X, labels, y)
        return est.predict(X)
    if name == "X":
        est = BaseXRegressor(learner=LGBMRegressor(**PARAMS), control_name="control")
        est.fit(X, labels, y, p=p)
        return est.predict(X, p=p)
    est = BaseDRRegressor(learner=LGBMRegressor(**PARAMS), control_name="control")
    est.fit(X, labels, y, p=p)
    return est.predict(X)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", required=True)
    parser.add_argument("--truth", required=True)
    parser.add_argument("--learners", nargs="+", default=["econml:T", "econml:X", "econml:DR",
                                                         "causalml:T", "causalml:X", "causalml:DR"])
    args = parser.parse_args()
    frame = pd.read_parquet(args.data)
    truth = np.load(args.truth)  # (n, K-1, M)
    features = [c for c in frame.columns if c.startswith("x")]
    outcomes = [c for c in frame.columns if c.startswith("y")]
    arms = sorted(frame["arm"].unique(), key=lambda a: (a != "control", a))
    T = frame["arm"].map({a: i for i, a in enumerate(arms)}).to_numpy()
    X = frame[features].to_numpy()
    K = len(arms)
    results = {}
    for spec in args.learners:
        lib, name = spec.split(":")
        fn = econml_effects if lib == "econml" else causalml_effects
        start = time.perf_counter()
        taus = [fn(name, X, T, frame[o].to_numpy(), K) for o in outcomes]
        seconds = time.perf_counter() - start
        tau = np.stack(taus, axis=2)  # (n, K-1, M)
        pehe = np.sqrt(((tau - truth) ** 2).mean(axis=0))
        results[spec] = {"seconds": seconds, "pehe": pehe.tolist()}
    print(json.dumps(results))


if __name__ == "__main__":
    main()
