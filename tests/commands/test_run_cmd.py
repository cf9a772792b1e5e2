"""mbs run: sweep + projection + report with the two stage functions replaced by fakes."""

import sys
import types

import pytest
from synthetic_records import synthetic_projection, synthetic_sweep

from mbs_layers.cli import main as cli_main
from mbs_layers.records import RecordStore, point_key


def resumable_writer(records, fields):
    """A fake stage that appends only the records not yet in the store (as the real ones do)."""

    def write(store_path):
        store = RecordStore(store_path)
        done = store.keys(fields)
        for r in records:
            if point_key(r, fields) not in done:
                store.append(r)
        return store_path

    return write


@pytest.fixture
def stages(monkeypatch):
    """Fake ``run_sweep`` and ``run_projection`` installed where ``mbs run`` imports them."""
    calls = []
    sweep = resumable_writer(
        synthetic_sweep(widths=(256,), tokens=(64,), device="cpu"), ("format", "hparams", "tokens")
    )
    projection = resumable_writer(synthetic_projection(n=256, seeds=(0,)), ("format", "hparams", "seed"))

    def run_sweep(preset, store, *, device=None, progress=True):
        calls.append(("sweep", preset, store, device))
        return sweep(store)

    def run_projection(store, *, preset="smoke", progress=True, device=None):
        calls.append(("projection", preset, store, device))
        return projection(store)

    monkeypatch.setitem(sys.modules, "mbs_layers.sweep", types.SimpleNamespace(run_sweep=run_sweep))
    monkeypatch.setitem(
        sys.modules, "mbs_layers.accuracy.projection", types.SimpleNamespace(run_projection=run_projection)
    )
    return calls


def test_run_on_cpu_uses_smoke_presets_writes_stores_and_the_report(tmp_path, stages, capsys):
    out = tmp_path / "out"
    assert cli_main(["run", "--out", str(out), "--device", "cpu", "--quiet"]) == 0
    assert stages == [
        ("sweep", "smoke", out / "kernels.jsonl", "cpu"),
        ("projection", "smoke", out / "accuracy.jsonl", "cpu"),
    ]
    html = out / "report.html"
    assert str(html.resolve()) in capsys.readouterr().out
    text = html.read_text()
    assert "CPU results." in text and 'id="roofline"' in text


@pytest.fixture
def no_report(monkeypatch):
    """A stand-in for build_report, for tests about the stages only."""

    def write(paths, out_html, **kwargs):
        out_html.write_text(" ".join(map(str, paths)))
        return out_html

    monkeypatch.setattr("mbs_layers.report.build_report", write)


def test_rerun_resumes_without_duplicates(tmp_path, stages, no_report):
    out = tmp_path / "out"
    for _ in range(2):
        assert cli_main(["run", "--out", str(out), "--device", "cpu", "--quiet"]) == 0
    kernels = RecordStore(out / "kernels.jsonl").records()
    assert len(kernels) == len({point_key(r, ("format", "hparams", "tokens")) for r in kernels}) > 0
    assert [c[2] for c in stages] == [out / "kernels.jsonl", out / "accuracy.jsonl"] * 2


def test_gpu_device_picks_the_default_presets_unless_given(tmp_path, stages, no_report, monkeypatch):
    monkeypatch.setattr("mbs_layers.cli.check_device", lambda name, text: text)  # no GPU here: pretend
    cli_main(["run", "--out", str(tmp_path), "--device", "cuda", "--quiet"])
    cli_main(
        [
            "run",
            "--out",
            str(tmp_path),
            "--device",
            "cuda",
            "--preset",
            "models",
            "--accuracy-preset",
            "smoke",
            "--quiet",
        ]
    )
    assert [c[1] for c in stages] == ["default", "default", "models", "smoke"]


def test_a_failed_stage_still_gives_a_report_and_a_failing_exit(tmp_path, stages, monkeypatch, capsys):
    def broken(*args, **kwargs):
        raise RuntimeError("sweep exploded")

    monkeypatch.setattr(sys.modules["mbs_layers.sweep"], "run_sweep", broken)
    assert cli_main(["run", "--out", str(tmp_path), "--device", "cpu", "--quiet"]) == 1
    output = capsys.readouterr()
    assert "sweep exploded" in output.err and "failed; continuing" in output.out
    assert "No ok kernel measurements" in (tmp_path / "report.html").read_text()
