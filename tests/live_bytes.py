"""Peak bytes of the tensors an operation allocates, counted from inside the dispatcher.

``LiveBytes`` is a ``TorchDispatchMode``: every op's outputs are attributed to their storages
(a sparse tensor's indices and values), counted once per storage while any tensor of it is
alive (views share; in-place ops add nothing), and released when the last Python tensor of it
is collected. Storages that existed before the mode (weights, inputs) are not counted. It
works on the meta device too, so a 4096x4096 layer can be measured without computing anything.
"""

import weakref

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten


def storages(t: torch.Tensor) -> list[tuple[int, int]]:
    """(key, bytes) of each storage behind ``t``."""
    if t.layout == torch.sparse_coo:
        parts = [t._indices(), t._values()]
    elif t.layout in (torch.sparse_csr, torch.sparse_bsr):
        parts = [t.crow_indices(), t.col_indices(), t.values()]
    elif t.layout != torch.strided:
        return []
    else:
        parts = [t]
    return [(p.untyped_storage()._cdata, p.untyped_storage().nbytes()) for p in parts]


class LiveBytes(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.refs: dict[int, list[int]] = {}  # storage key -> [tensor objects alive, bytes]
        self.before: set[int] = set()
        self.current = self.peak = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        for t in tree_flatten((args, kwargs))[0]:
            if isinstance(t, torch.Tensor):  # storages first seen as inputs existed before
                self.before |= {key for key, _ in storages(t) if key not in self.refs}
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor):
                self._track(t)
        return out

    def _track(self, t: torch.Tensor) -> None:
        keys = []
        for key, nbytes in storages(t):
            if key in self.before:
                continue
            if key not in self.refs:
                self.refs[key] = [0, nbytes]
                self.current += nbytes
                self.peak = max(self.peak, self.current)
            self.refs[key][0] += 1
            keys.append(key)
        if keys:
            weakref.finalize(t, self._release, keys)

    def _release(self, keys: list[int]) -> None:
        for key in keys:
            entry = self.refs.get(key)
            if entry is None:
                continue
            entry[0] -= 1
            if entry[0] == 0:
                self.current -= entry[1]
                del self.refs[key]
