import warnings

import numpy as np
import pandas as pd
import polars as pl
import pytest

import pexkit as px

SPEC = px.ExperimentSpec(
    unit="uid",
    treatment={"column": "arm", "arms": ["c", "t1", "t2"]},
    outcomes=[{"name": "y", "goal": "maximize"}, {"name": "z", "goal": "minimize"}],
    features={"numeric": ["x1"], "categorical": ["g"]},
)
PSPEC = px.ExperimentSpec.from_dict({**SPEC.to_dict(), "propensity": "p"})


def frame(n: int = 60, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "uid": np.arange(n),
            "arm": np.array(["c", "t1", "t2"])[np.arange(n) % 3],
            "y": rng.normal(size=n),
            "z": rng.integers(0, 2, n).astype(float),
            "x1": rng.normal(size=n),
            "g": rng.choice(["a", "b"], n),
            "p": np.full(n, 1 / 3),
        }
    )


def test_from_pandas_polars_csv_parquet_agree(tmp_path):
    df = frame()
    a = px.LoggedData.from_frame(df, SPEC)
    b = px.LoggedData.from_frame(pl.from_pandas(df), SPEC)
    df.to_csv(tmp_path / "log.csv", index=False)
    df.to_parquet(tmp_path / "log.parquet", index=False)
    c = px.LoggedData.from_path(tmp_path / "log.csv", SPEC)
    d = px.LoggedData.from_path(tmp_path / "log.parquet", SPEC)
    for other in (b, c, d):
        np.testing.assert_array_equal(a.treatment, other.treatment)
        np.testing.assert_allclose(a.outcomes, other.outcomes)
        np.testing.assert_allclose(a.encoder.matrix(a.X), other.encoder.matrix(other.X))
    assert a.treatment.tolist()[:3] == [0, 1, 2]
    assert a.outcomes.shape == (60, 2)
    np.testing.assert_allclose(a.propensity, 1 / 3)
    assert a.arm_counts == {"c": 20, "t1": 20, "t2": 20}


def test_categories_are_kept_for_new_frames():
    data = px.LoggedData.from_frame(frame(), SPEC)
    new = pd.DataFrame({"x1": [0.0, 1.0], "g": ["b", "unseen"]})
    X = data.encoder.matrix(data.encoder.transform(new))
    assert X[0, 1] == data.encoder.categories["g"].index("b")
    assert np.isnan(X[1, 1])


def _with(df, **cols):
    df = df.copy()
    for k, v in cols.items():
        df[k] = v
    return df


def _set(df, col, row, value):
    df = df.copy()
    df[col] = df[col].astype(object)
    df.loc[row, col] = value
    return df


base = frame()
BAD = [
    ("missing column", base.drop(columns=["y"]), SPEC, r"columns \['y'\] are missing"),
    ("unknown label", _set(base, "arm", 7, "t9"), SPEC, r"unknown labels \['t9'\].*row 7"),
    ("missing label", _set(base, "arm", 4, None), SPEC, r"missing labels.*row 4"),
    ("too few rows", base[base.arm != "t2"].pipe(lambda d: pd.concat([d, base[base.arm == "t2"].head(3)])), SPEC, "at least 10 rows.*3 rows for arm 't2'"),
    ("nan outcome", _set(base, "y", 5, np.nan), SPEC, r"column 'y'.*1 missing values.*row 5.*'missing:"),
    ("inf outcome", _set(base, "z", 9, np.inf), SPEC, r"column 'z'.*infinite values.*row 9"),
    ("text outcome", _set(base, "y", 2, "lots"), SPEC, r"column 'y'.*numeric outcome.*row 2"),
    ("nan propensity", _set(base, "p", 3, np.nan), PSPEC, r"column 'p'.*row 3"),
    ("zero propensity", _set(base, "p", 6, 0.0), PSPEC, r"column 'p'.*\(0, 1\].*row 6.*logits"),
    ("propensity > 1", _set(base, "p", 8, 1.5), PSPEC, r"column 'p'.*\(0, 1\].*row 8"),
    ("duplicate ids", _set(base, "uid", 10, 3), SPEC, r"column 'uid'.*duplicate.*row 10"),
    ("text feature", _set(base, "x1", 1, "high"), SPEC, r"column 'x1'.*numeric feature.*row 1.*categorical"),
    ("empty frame", base.head(0), SPEC, "0 rows"),
]


@pytest.mark.parametrize(("case", "df", "spec", "match"), BAD, ids=[b[0] for b in BAD])
def test_bad_input_table(case, df, spec, match):
    with pytest.raises(px.InvalidDataError, match=match):
        px.LoggedData.from_frame(df, spec)


def test_empty_and_missing_files(tmp_path):
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(px.InvalidDataError, match="empty file"):
        px.LoggedData.from_path(tmp_path / "empty.csv", SPEC)
    (tmp_path / "header.csv").write_text("uid,arm,y,z,x1,g\n")
    with pytest.raises(px.InvalidDataError, match="0 rows"):
        px.LoggedData.from_path(tmp_path / "header.csv", SPEC)
    with pytest.raises(px.InvalidDataError, match="does not exist"):
        px.LoggedData.from_path(tmp_path / "nope.csv", SPEC)
    with pytest.raises(px.InvalidDataError, match=r"\.csv or \.parquet"):
        px.LoggedData.from_path(tmp_path / "log.xlsx", SPEC)


def test_sample_ratio_mismatch_warns_below_threshold():
    rng = np.random.default_rng(0)
    n = 3000
    arms = rng.choice(["c", "t1", "t2"], n, p=[0.40, 0.30, 0.30])
    df = _with(frame(n), arm=arms)
    with pytest.warns(px.SampleRatioMismatchWarning, match="sample ratio mismatch"):
        data = px.LoggedData.from_frame(df, SPEC)
    assert data.srm is not None and data.srm.mismatch and data.srm.p_value < 1e-3


def test_balanced_log_does_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        data = px.LoggedData.from_frame(frame(3000), SPEC)
    assert data.srm is not None and not data.srm.mismatch
    assert data.srm.p_value == pytest.approx(1.0)


def test_subset_keeps_rows():
    data = px.LoggedData.from_frame(frame(), SPEC)
    sub = data.subset(data.treatment == 1)
    assert sub.n_units == 20 and set(sub.treatment) == {1}
