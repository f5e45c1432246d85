"""Long-term outcomes offline: the surrogate index (Athey, Chetty, Imbens and Kang 2019)."""

from pexkit.longterm.surrogate import SurrogateIndex

__all__ = ["SurrogateIndex"]
