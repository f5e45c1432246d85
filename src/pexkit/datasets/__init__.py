"""Loaders for public experiment datasets (they read a path; nothing is downloaded)."""

from pexkit.datasets.hillstrom import hillstrom_spec, load_hillstrom
from pexkit.datasets.ihdp import IHDPData, load_ihdp

__all__ = ["IHDPData", "hillstrom_spec", "load_hillstrom", "load_ihdp"]
