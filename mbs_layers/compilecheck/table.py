"""Tables from compile-grid rows: per-kernel summary, docs/kernels-compiled.{md,json}, and the
``unfit_configs.json`` the kernels' autotune pruning reads."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

from ..kernels import _tuning
from .grid import registered_kernels


def config_text(config) -> str:
    return _tuning.config_label(config) if config is not None else "fixed"


def unfit(rows: list[dict]) -> dict:
    """{kernel: {arch: {dtype: sorted config labels}}} unfit in any launch (failed, spilled, over smem)."""
    found: dict = defaultdict(lambda: defaultdict(lambda: defaultdict(set)))
    for r in rows:
        if not r["fits"] and r["config"] != "fixed":
            found[r["kernel"]][r["arch"]][r["dtype"]].add(r["config"])
    return {
        k: {a: {d: sorted(c) for d, c in sorted(by_d.items())} for a, by_d in sorted(by_a.items())}
        for k, by_a in sorted(found.items())
    }


def summarise(rows: list[dict]) -> dict:
    """Per (kernel, arch, dtype): configs compiled/kept/pruned/fit, worst spills and smem of kept ones."""
    groups = defaultdict(list)
    for r in rows:
        groups[(r["kernel"], r["arch"], r["dtype"])].append(r)
    bad = unfit(rows)
    out = {}
    for (kernel, arch, dtype), rs in sorted(groups.items()):
        labels = {r["config"] for r in rs}
        pruned = set(bad.get(kernel, {}).get(arch, {}).get(dtype, ()))
        kept_rows = [r for r in rs if r["config"] not in pruned]
        out[(kernel, arch, dtype)] = {
            "configs": len(labels),
            "compiled": len({r["config"] for r in rs if r["ok"]}),
            "kept": len(labels - pruned),
            "pruned": len(labels & pruned),
            "launches": len({r["variant"] for r in rs}),
            "worst_spills": max((r["spills"] for r in rs if r["ok"]), default=0),
            "kept_spills": max((r["spills"] for r in kept_rows), default=0),
            "kept_smem": max((r["shared"] or 0 for r in kept_rows), default=0),
            "smem_limit": rs[0]["smem_limit"],
            "max_smem": max((r["shared"] or 0 for r in rs), default=0),
            "tensor_cores": _tensor_cores(kept_rows, arch),
            "compile_s": sum(r["compile_s"] for r in rs),
        }
    return out


def _tensor_cores(rows, arch) -> str:
    dot = [r for r in rows if r["uses_dot"] and r["ok"]]
    if not dot:
        return "no tl.dot"
    wg = sum(1 for r in dot if r["hgmma"])
    mma = sum(1 for r in dot if r["hmma"] and not r["hgmma"])
    none = len(dot) - wg - mma
    parts = [
        f"HGMMA {wg}" if arch == "sm90" else None,
        f"HMMA {mma}" if mma else None,
        f"none {none}" if none else None,
    ]
    return ", ".join(p for p in parts if p) or "HMMA 0"


def kernels_without_config(summary: dict) -> list[tuple]:
    return [key for key, s in summary.items() if s["kept"] == 0]


def summary_markdown(summary: dict, archs=None) -> str:
    lines = [
        (
            "| kernel | arch | dtype | launches | configs | compiled | kept | pruned | worst spills (B) "
            "| kept spills (B) | kept max smem / limit (B) | tensor cores (kept compiles) |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (kernel, arch, dtype), s in summary.items():
        lines.append(
            f"| `{kernel}` | {arch} | {dtype} | {s['launches']} | {s['configs']} | {s['compiled']} "
            f"| {s['kept']} | {s['pruned']} | {s['worst_spills']} | {s['kept_spills']} "
            f"| {s['kept_smem']:,} / {s['smem_limit']:,} | {s['tensor_cores']} |"
        )
    return "\n".join(lines)


def detail_markdown(rows: list[dict]) -> str:
    lines = [
        (
            "| kernel | launch | origin | dtype | arch | config | ok | regs | spill st/ld (B) | smem (B) "
            "| HMMA | HGMMA | pruned | compile (s) |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    bad = unfit(rows)
    for r in sorted(rows, key=lambda r: (r["kernel"], r["variant"], r["dtype"], r["arch"], r["config"])):
        pruned = r["config"] in bad.get(r["kernel"], {}).get(r["arch"], {}).get(r["dtype"], ())
        ok = "yes" if r["ok"] else f"no: {r['error'][:80]}"
        lines.append(
            f"| `{r['kernel']}` | {r['variant']} | {r['origin']} | {r['dtype']} | {r['arch']} | {r['config']} "
            f"| {ok} | {r['registers'] or ''} | {r['spill_stores'] or 0}/{r['spill_loads'] or 0} "
            f"| {r['shared'] if r['shared'] is not None else ''} | {r['hmma']} | {r['hgmma']} "
            f"| {'yes' if pruned else ''} | {r['compile_s']:.1f} |"
        )
    return "\n".join(lines)


def write(rows: list[dict], out: str | Path, *, command: str, dtypes, archs, planned: int) -> list[Path]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    summary = summarise(rows)
    kernels = sorted({r["kernel"] for r in rows})
    doc = {
        "command": command,
        "registered": registered_kernels(),
        "planned_compiles": planned,
        "dtypes": list(dtypes),
        "archs": [f"sm{a}" for a in archs],
        "kernels": kernels,
        "summary": [{"kernel": k, "arch": a, "dtype": d, **s} for (k, a, d), s in summary.items()],
        "rows": rows,
    }
    json_path = out / "kernels-compiled.json"
    json_path.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    md_path = out / "kernels-compiled.md"
    md_path.write_text(_document(command, dtypes, archs, kernels, rows, summary, planned))
    return [md_path, json_path]


def _coverage(rows, planned) -> str:
    if len(rows) >= planned:
        return f"every autotune config of each launch; {len(rows)} compiles in all"
    launches = defaultdict(set)
    for r in rows:
        launches[r["kernel"]].add(r["variant"])
    return (
        f"**{len(rows)} of the {planned} compiles of the full grid** (the grid was interrupted; it runs each "
        f"kernel's first launch at every config, dtype and arch before any kernel's second launch); distinct "
        "(launch, dtype) specialisations covered per kernel: "
        + ", ".join(f"`{k}` {len(v)}" for k, v in sorted(launches.items()))
    )


def _document(command, dtypes, archs, kernels, rows, summary, planned) -> str:
    return f"""# Triton kernels compiled for A100 (sm80) and H100 (sm90)

Generated by `{command}` (see [benchmarking](benchmarking.md#compile-check)); do not edit by hand.

**Coverage.** Kernels: {len(kernels)} ({", ".join(f"`{k}`" for k in kernels)}). Architectures:
{", ".join(f"sm{a}" for a in archs)}. Dtypes: {", ".join(dtypes)}. Launches: every distinct
specialisation the Triton backends make for a 4096 × 4096 layer at the `kernels`/`sparse24`
preset budgets (0.25 and 0.1 of dense parameters), tokens 4096, forward and backward;
{_coverage(rows, planned)}. Numbers come from the compiler:
registers and spill bytes from `ptxas -v`, shared memory from Triton's kernel metadata (against
the per-block opt-in limit: sm80 166,912 B, sm90 232,448 B), tensor-core instructions counted in
the SASS (`cuobjdump -sass`: HMMA = mma.sync, HGMMA = Hopper wgmma).

A config is **pruned** on an architecture and dtype when, in any launch, it failed to compile,
spilled registers, or needed more shared memory than the limit; the kernels' autotune pruning
(`mbs_layers/kernels/_tuning.py`, `unfit_configs.json`) then never tries it there.

## Summary

{summary_markdown(summary, archs)}

## Every compile

{detail_markdown(rows)}
"""


def merged(
    rows: list[dict], out: str | Path, kernels: set[str], *, command: str, planned: int
) -> tuple[list[dict], str, int]:
    """``rows`` (of ``kernels``) merged into the table already in ``out``: its rows of other
    kernels kept, its command extended, its planned count adjusted by the replaced rows."""
    path = Path(out) / "kernels-compiled.json"
    if not path.exists():
        return rows, command, planned
    old = json.loads(path.read_text())
    registered = set(registered_kernels())
    kept = [r for r in old["rows"] if r["kernel"] not in kernels and r["kernel"] in registered]
    replaced = len(old["rows"]) - len(kept)
    return (
        kept + rows,
        f"{old['command']} (then `{command}` replaced the rows of {', '.join(sorted(kernels))})",
        old["planned_compiles"] - replaced + planned,
    )


def write_unfit(rows: list[dict]) -> Path:
    _tuning.UNFIT_PATH.write_text(json.dumps(unfit(rows), indent=1, sort_keys=True) + "\n")
    _tuning.unfit_table.cache_clear()
    return _tuning.UNFIT_PATH
