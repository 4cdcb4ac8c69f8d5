"""Old import path, kept working: this module is autoresearch.execution.executor under its old name."""

import sys

from autoresearch.execution import executor as _moved

sys.modules[__name__] = _moved  # the same module object: attributes, monkeypatching, isinstance
