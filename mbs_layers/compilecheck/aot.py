"""Compile one captured launch at one autotune config for one GPU architecture, ahead of time.

Triton compiles for a GPU that is not present given a ``GPUTarget``; the launch's arguments are
specialised exactly as ``JITFunction.run`` would (the same binder, for the target's backend).
What the compiler says is read back: ptxas's ``-v`` log (registers, spill bytes), Triton's
shared-memory size, and the SASS (``cuobjdump`` from the Triton wheel) for tensor-core
instructions. Results are cached on disk by kernel source, specialisation, options and
architecture, so a repeated grid costs nothing.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource, make_backend
from triton.runtime.jit import create_function_from_signature

# Per-block opt-in shared-memory limits (cudaDevAttrMaxSharedMemoryPerBlockOptin).
SMEM_LIMIT = {80: 166_912, 90: 232_448}
ARCH_NAMES = {"sm80": 80, "sm90": 90}
CUOBJDUMP = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "cuobjdump"


def cache_dir() -> Path:
    return Path(os.environ.get("MBS_COMPILE_CACHE", Path.home() / ".cache" / "mbs" / "compile-check"))


@dataclass
class CompileSpec:
    """Everything the compiler sees: the kernel, its specialised signature, constexprs, options."""

    kernel: object  # JITFunction
    signature: dict
    constexprs: dict
    attrs: dict
    options: dict
    arch: int

    def key(self) -> str:
        text = repr(
            (
                self.kernel.cache_key,
                sorted(self.signature.items()),
                sorted(map(repr, self.constexprs.items())),
                sorted(map(repr, self.attrs.items())),
                sorted(self.options.items()),
                self.arch,
                triton.__version__,
            )
        )
        return hashlib.sha256(text.encode()).hexdigest()[:24]


@dataclass
class CompileResult:
    ok: bool
    error: str | None = None
    registers: int | None = None
    spill_stores: int | None = None
    spill_loads: int | None = None
    shared: int | None = None
    smem_limit: int | None = None
    uses_dot: bool = False
    hmma: int = 0  # mma.sync tensor-core instructions in SASS
    hgmma: int = 0  # warp-group (wgmma) tensor-core instructions in SASS (sm90)
    compile_s: float = 0.0

    @property
    def spills(self) -> int:
        return (self.spill_stores or 0) + (self.spill_loads or 0)

    @property
    def fits(self) -> bool:
        """Compiled, no spills, shared memory within the architecture's limit."""
        return self.ok and self.spills == 0 and (self.shared or 0) <= (self.smem_limit or 0)


def specialise(kernel, args: tuple, kwargs: dict, arch: int) -> CompileSpec:
    """``kernel(*args, **kwargs)`` (config meta-parameters and num_warps/num_stages included)
    specialised as the launcher would on a GPU of compute capability ``arch``."""
    backend = make_backend(GPUTarget("cuda", arch, 32))
    binder = create_function_from_signature(kernel.signature, kernel.params, backend)
    bound, specialization, options = binder(*args, **kwargs)
    options, signature, constexprs, attrs = kernel._pack_args(backend, kwargs, bound, specialization, options)
    chosen = {k: getattr(options, k) for k in ("num_warps", "num_stages", "num_ctas", "maxnreg")}
    return CompileSpec(kernel, signature, constexprs, attrs, {k: v for k, v in chosen.items() if v is not None}, arch)


def _ptxas_numbers(log: str) -> dict:
    def total(pattern):
        return sum(int(v) for v in re.findall(pattern, log))

    regs = re.findall(r"Used (\d+) registers", log)
    return {
        "registers": max(map(int, regs)) if regs else None,
        "spill_stores": total(r"(\d+) bytes spill stores"),
        "spill_loads": total(r"(\d+) bytes spill loads"),
    }


def _sass_counts(cubin: bytes) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        sass = subprocess.run([str(CUOBJDUMP), "-sass", f.name], capture_output=True, text=True, check=True).stdout
    return {"hmma": len(re.findall(r"\bHMMA\.", sass)), "hgmma": len(re.findall(r"\bHGMMA\.", sass))}


def compile_spec(spec: CompileSpec) -> CompileResult:
    """Compile ``spec`` (always, bypassing Triton's cache, so ptxas prints its log)."""
    start = time.perf_counter()
    log = io.StringIO()
    knobs = triton.knobs
    saved = knobs.nvidia.dump_ptxas_log, knobs.compilation.always_compile
    knobs.nvidia.dump_ptxas_log, knobs.compilation.always_compile = True, True
    try:
        with contextlib.redirect_stdout(log):
            compiled = triton.compile(
                ASTSource(spec.kernel, spec.signature, constexprs=spec.constexprs, attrs=spec.attrs),
                target=GPUTarget("cuda", spec.arch, 32),
                options=dict(spec.options),
            )
    except Exception as err:  # noqa: BLE001  (the compiler's own error is the result being recorded)
        message = f"{type(err).__name__}: {err}".strip().splitlines()
        return CompileResult(
            False,
            error=" ".join(message[:3])[:400],
            smem_limit=SMEM_LIMIT[spec.arch],
            compile_s=time.perf_counter() - start,
        )
    finally:
        knobs.nvidia.dump_ptxas_log, knobs.compilation.always_compile = saved
    return CompileResult(
        True,
        shared=int(compiled.metadata.shared),
        smem_limit=SMEM_LIMIT[spec.arch],
        uses_dot="tt.dot" in compiled.asm["ttir"],
        **_ptxas_numbers(log.getvalue()),
        **_sass_counts(compiled.asm["cubin"]),
        compile_s=time.perf_counter() - start,
    )


def cached_result(spec: CompileSpec) -> CompileResult | None:
    """The cached result of ``spec``, if it was compiled before."""
    path = cache_dir() / f"{spec.key()}.json"
    return CompileResult(**json.loads(path.read_text())) if path.exists() else None


def compile_cached(spec: CompileSpec) -> CompileResult:
    """``compile_spec`` through the on-disk cache (``$MBS_COMPILE_CACHE``, default ~/.cache/mbs)."""
    found = cached_result(spec)
    if found is not None:
        return found
    path = cache_dir() / f"{spec.key()}.json"
    result = compile_spec(spec)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(asdict(result)))
    os.replace(tmp, path)  # atomic: parallel runs (xdist) never read half a file
    return result
