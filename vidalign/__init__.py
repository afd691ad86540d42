"""vidalign: data, simulation, preprocessing, training and evaluation for aligning video and motion generators.

Subpackages: ``vidalign.datasets_builders``, ``vidalign.simulation``, ``vidalign.preprocessing``,
``vidalign.training``, ``vidalign.eval`` (folders at the repository root) and the core modules here
(``format``, ``shards``, ``builder``, ``executors``, ``data``, ``cli``).
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("vidalign")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+local"

from vidalign.errors import ConfigError, InputError, VidalignError  # noqa: E402

__all__ = ["__version__", "VidalignError", "ConfigError", "InputError"]
