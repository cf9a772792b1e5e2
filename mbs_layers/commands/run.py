"""``mbs run``: the main job — a sweep sized to the device, the projection experiment, the report.

Results go to ``OUT/kernels.jsonl`` and ``OUT/accuracy.jsonl`` (append-only stores, so a
re-run resumes where the last one stopped) and the page to ``OUT/report.html``. A stage that
fails is reported and skipped; the report is still built from what exists.
"""

from __future__ import annotations

OUT_IS_FOLDER = True  # --out names a folder (checked by the CLI before running)
HELP = "main job: device-sized kernel sweep + projection experiment + HTML report"


def add_arguments(parser) -> None:
    parser.add_argument("--out", default="out", help="output folder (default out/); a re-run resumes there")
    parser.add_argument(
        "--preset", default="auto", help="sweep preset or YAML file (default auto: smoke on CPU, default on a GPU)"
    )
    parser.add_argument(
        "--accuracy-preset", default="auto", help="projection preset (default auto: smoke on CPU, default on a GPU)"
    )
    parser.add_argument("--device", default=None, help="cuda or cpu (default: cuda if available)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def _stage(title: str, module: str, function: str, *args, **kwargs) -> bool:
    """Run ``module.function(*args, **kwargs)``; print and swallow its error (returns success)."""
    import importlib
    import traceback

    print(f"[mbs run] {title} ...", flush=True)
    try:
        getattr(importlib.import_module(module), function)(*args, **kwargs)
        return True
    except Exception:  # noqa: BLE001  (one failed stage must not cost the other stage or the report)
        traceback.print_exc()
        print(f"[mbs run] {title} failed; continuing", flush=True)
        return False


def main(args) -> int:
    from pathlib import Path

    import torch

    from ..report import build_report

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    on_gpu = device.startswith("cuda")
    preset = args.preset if args.preset != "auto" else ("default" if on_gpu else "smoke")
    accuracy_preset = args.accuracy_preset if args.accuracy_preset != "auto" else ("default" if on_gpu else "smoke")
    out = Path(args.out)
    kernels, accuracy = out / "kernels.jsonl", out / "accuracy.jsonl"
    progress = not args.quiet
    ok = _stage(
        f"kernel sweep (preset {preset}, {device}) -> {kernels}",
        "mbs_layers.sweep",
        "run_sweep",
        preset,
        kernels,
        device=device,
        progress=progress,
    )
    ok &= _stage(
        f"projection experiment (preset {accuracy_preset}, {device}) -> {accuracy}",
        "mbs_layers.accuracy.projection",
        "run_projection",
        accuracy,
        preset=accuracy_preset,
        device=device,
        progress=progress,
    )
    stores = [p for p in (kernels, accuracy) if p.exists()]
    html = build_report(stores, out / "report.html", title=f"mbs report ({device}, preset {preset})")
    print(f"[mbs run] report: {html.resolve()}")
    return 0 if ok else 1
