"""autoresearch: autonomous ML research loops.

The data flows one way: task config -> context -> agent -> guard -> commit -> run ->
metrics -> decision -> ledger -> analysis. Each arrow is one module.
"""

from autoresearch.errors import AutoresearchError, ConfigError

__version__ = "0.1.0"
__all__ = ["AutoresearchError", "ConfigError", "__version__"]
