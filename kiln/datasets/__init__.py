"""kiln.datasets: mnist, imdb, reuters, boston_housing (as keras.datasets), plus digits
(scikit-learn's bundled set) and synthetic (generated look-alikes) for work with no network."""

from kiln.frontends.keras.datasets import *  # noqa: F403
from kiln.frontends.keras.datasets import __all__  # noqa: F401
