"""The one place that imports ``wsidicomizer``.

Importing wsidicomizer sets ``pydicom.config.enforce_valid_values = True`` and calls
``pydicom.config.future_behavior()``, which switches pydicom, for the whole process, to strict
validation and to its next major version's behaviour. That breaks every other pydicom user in the
process (de-identification, ingest, DICOMweb). :func:`import_wsidicomizer` imports it once, lazily,
and puts pydicom's configuration back exactly as it was. Code that needs a wsidicomizer submodule
calls this function first; later imports of submodules do not run the package's set-up again.
"""

from __future__ import annotations

import importlib
import threading
from types import ModuleType
from typing import Any

_LOCK = threading.Lock()
_MISSING = object()
# pydicom.config module attributes and pydicom.config.settings attributes that importing
# wsidicomizer changes (directly or through future_behavior()).
_CONFIG_ATTRS = ("_use_future", "INVALID_KEYWORD_BEHAVIOR", "INVALID_KEY_BEHAVIOR")
_SETTINGS_ATTRS = ("_reading_validation_mode", "_writing_validation_mode")
_ENFORCE = "enforce_valid_values"


def import_wsidicomizer() -> ModuleType:
    """The ``wsidicomizer`` package, imported without changing pydicom's global configuration."""
    with _LOCK:
        from pydicom import config

        saved_config = {name: getattr(config, name, _MISSING) for name in _CONFIG_ATTRS}
        saved_enforce = config.__dict__.get(_ENFORCE, _MISSING)
        saved_settings = {name: getattr(config.settings, name) for name in _SETTINGS_ATTRS}
        try:
            return importlib.import_module("wsidicomizer")
        finally:
            _restore(config, saved_config, saved_enforce, saved_settings)


def _restore(
    config: Any, saved: dict[str, object], enforce: object, settings: dict[str, object]
) -> None:
    for name, value in saved.items():
        if value is not _MISSING:
            setattr(config, name, value)
    if enforce is _MISSING:
        config.__dict__.pop(_ENFORCE, None)
    else:
        config.__dict__[_ENFORCE] = enforce
    for name, value in settings.items():
        setattr(config.settings, name, value)
