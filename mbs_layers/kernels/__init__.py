"""Fast kernels; importing a module registers its backends (keyed by the layer class).

A module is named after the format it serves (``blast``, ``blocksparse``, ``sltrain``,
``unstructured`` (cuSPARSE), ``semi24_cusparselt``, ``cospadi``, ``fanin``), or after its
family where one kernel serves several formats:
  * ``lowrank``: the fused low-rank chain, for lowrank and lowrank_light (sltrain reuses it),
    and its ELL gather kernel alone (fanin, sltrain above the fused ranks);
  * ``monarch``: the fused two-factor kernel, for monarch and btt;
  * ``tt``: the tensor-train core chain, for tt and kronecker (a two-core TT);
  * ``nm``: the N:M kernel, for nm and its fixed 2:4 case semi24 (Triton);
  * ``chains``: dsformer and armor, each stage on its own format's backend (no new kernel);
  * ``block_gemm``: the strided batched block GEMM, blockdiag's forward and the engine under
    monarch/btt's two-kernel path and every block backward.

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
