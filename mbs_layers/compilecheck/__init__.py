"""Ahead-of-time compilation of every Triton kernel for GPUs that are not here (sm80, sm90).

``launches`` records the kernel launches the real backends make, ``aot`` compiles one launch at
one config for one architecture and reads registers, spills, shared memory and tensor-core
instructions from the compiler, and ``grid`` runs the whole (kernel, config, dtype, arch) grid
that ``mbs compile-check`` writes to ``docs/kernels-compiled.{md,json}``.
"""
