import pexkit as px

CONTRACT = {
    "ExperimentSpec", "LoggedData", "EffectModel", "LinearPolicy", "evaluate_policy",
    "evaluate_policies", "simulate", "PexkitError", "load_hillstrom", "load_ihdp",
}


def test_all_exports_exist_and_cover_the_contract():
    assert set(px.__all__) >= CONTRACT
    for name in px.__all__:
        assert hasattr(px, name), name
    assert px.__all__ == sorted(px.__all__)


def test_every_error_derives_from_the_root():
    for name in ("SpecError", "InvalidDataError", "NotFittedError", "InvalidParameterError"):
        assert issubclass(getattr(px, name), px.PexkitError)
    assert issubclass(px.InvalidDataError, ValueError)
    assert issubclass(px.NotFittedError, AttributeError)
