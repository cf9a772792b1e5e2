"""One module per weight format; each defines a ``StructuredLinear`` subclass and registers it.

Importing this package imports every module in it, so adding a format is adding a file.
"""

import importlib
import pkgutil

for _info in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_info.name}")
