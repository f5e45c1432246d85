"""Small statistical constants shared by every layer."""

from __future__ import annotations

from scipy import stats

__all__ = ["Z95"]

Z95 = float(stats.norm.ppf(0.975))  # two-sided 95% normal quantile
