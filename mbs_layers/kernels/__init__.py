"""Fast kernels, one module per kernel family; importing a module registers its backends.

The package's loader (``mbs_layers.__init__``) imports this package after the formats, on the
first look-up of a format or backend. A module whose optional dependency (triton) is missing
is skipped, leaving the ``torch`` reference in charge.
"""
import importlib
import pkgutil

for _info in pkgutil.iter_modules(__path__):
    try:
        importlib.import_module(f"{__name__}.{_info.name}")
    except ModuleNotFoundError as _err:  # only an absent optional package is tolerated
        if _err.name not in ("triton",):
            raise
