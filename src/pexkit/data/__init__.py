"""Validated experiment logs."""

from pexkit.data.logged import FeatureEncoder, LoggedData, SampleRatioTest, sample_ratio_test

__all__ = ["FeatureEncoder", "LoggedData", "SampleRatioTest", "sample_ratio_test"]
