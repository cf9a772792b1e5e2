"""Fast kernels, one module per kernel family; importing a module registers its backends.

Every module here is imported when a backend is first resolved. A module whose optional
dependency (triton) is missing is skipped, leaving the ``torch`` reference in charge.
"""
import importlib
import pkgutil

for _info in pkgutil.iter_modules(__path__):
    try:
        importlib.import_module(f"{__name__}.{_info.name}")
    except ModuleNotFoundError as _err:  # only an absent optional package is tolerated
        if _err.name not in ("triton",):
            raise
