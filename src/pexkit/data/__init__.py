"""Validated experiment logs."""

from pexkit.data.balance import balance
from pexkit.data.logged import FeatureEncoder, LoggedData, SampleRatioTest, sample_ratio_test

__all__ = ["FeatureEncoder", "LoggedData", "SampleRatioTest", "balance", "sample_ratio_test"]
