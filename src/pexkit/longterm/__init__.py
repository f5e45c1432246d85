"""Long-term outcomes offline: the surrogate index (Athey, Chetty, Imbens and Kang 2019)
and proxy weights on short-term outcomes learned from a history."""

from pexkit.longterm.proxy import ProxyWeights, proxy_weights
from pexkit.longterm.surrogate import SurrogateIndex

__all__ = ["ProxyWeights", "SurrogateIndex", "proxy_weights"]
