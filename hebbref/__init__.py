"""hebbref: deep learning with asymmetric feedback weights and Hebbian updates.

A reference implementation of Y. Amit, "Deep learning with asymmetric connections and
Hebbian updates", Frontiers in Computational Neuroscience 13:18 (2019), arXiv 1812.07965.
"""
from .logs import install_null_handler

install_null_handler()  # hebbref reports through logging and prints nothing: hebbref/logs.py

from .architectures import PRESETS
from .backends import backend_names, get_backend
from .datasets import load_dataset
from .errors import ConfigError, DataError, HebbrefError, InputError
from .losses import LOSSES, get_loss
from .network import Network, build_network
from .rules import RULES, feedback_matrix, feedback_update, forward_update

__version__ = "0.1.0"

__all__ = [
    "PRESETS", "LOSSES", "RULES", "Network", "build_network", "backend_names", "get_backend",
    "get_loss", "feedback_matrix", "feedback_update", "forward_update",
    "ConfigError", "DataError", "HebbrefError", "InputError",
    "load_dataset",
]
