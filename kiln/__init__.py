"""kiln: a deep-learning compiler with a Keras face.

Models written the Keras way lower to kiln's static-graph IR (kiln.ir), are differentiated
symbolically, optimized by compiler passes and run by a backend (kiln.runtimes).
"""

from kiln.ir.errors import KilnError

__version__ = "0.1.0"

__all__ = ["KilnError", "__version__"]
