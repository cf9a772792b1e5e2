"""mbs compare's energy gate: energy per call compared separately from time, beyond the noise
both sides state (window spread + counter resolution), with its own exit."""

from synthetic_records import H100, kernel_record

from mbs_layers.cli import main as cli_main
from mbs_layers.compare import compare_energy, compare_files
from mbs_layers.records import RecordStore
from mbs_layers.records.files import load_results


def store(path, *, joules_scale=1.0, spread=0.01, measured=True):
    s = RecordStore(path)
    for rank in (8, 16, 32):
        r = kernel_record(
            "lowrank", {"rank": rank}, n=256, median_s=1e-4 * rank, samples=[1e-4 * rank] * 10, device=H100
        )
        if measured:
            r.update(energy_j_per_call=r["energy_j_per_call"] * joules_scale, energy_spread=spread)
        else:
            r.update(energy_j_per_call=None, energy_reason="no_nvml")
        s.append(r)
    return path


def test_more_joules_beyond_the_noise_is_an_energy_regression_and_exits_1(tmp_path, capsys):
    base, new = store(tmp_path / "a.jsonl"), store(tmp_path / "b.jsonl", joules_scale=1.2)
    _, _, energy = compare_files(base, new)
    assert list(energy["verdict"]) == ["energy regression"] * 3
    assert energy["ratio"].round(6).eq(1.2).all()
    assert cli_main(["compare", str(base), str(new)]) == 1
    out = capsys.readouterr().out
    assert "3 energy regression" in out and "0 regression" in out  # time unchanged, reported apart


def test_a_change_within_the_stated_noise_is_unchanged(tmp_path):
    base = load_results(store(tmp_path / "a.jsonl", spread=0.05))
    new = load_results(store(tmp_path / "b.jsonl", joules_scale=1.1, spread=0.05))
    # 10% more, but each side's windows spread 5% and its counter resolves 2%: 14% of noise
    assert set(compare_energy(base, new)["verdict"]) == {"unchanged"}
    assert set(compare_energy(new, base)["verdict"]) == {"unchanged"}
    fewer = load_results(store(tmp_path / "c.jsonl", joules_scale=0.7, spread=0.05))
    assert set(compare_energy(base, fewer)["verdict"]) == {"energy improvement"}


def test_without_energy_on_one_side_nothing_is_compared(tmp_path, capsys):
    base, new = store(tmp_path / "a.jsonl"), store(tmp_path / "b.jsonl", measured=False)
    assert compare_files(base, new)[2].empty
    assert cli_main(["compare", str(base), str(new)]) == 0
    assert "energy" not in capsys.readouterr().out


def test_energy_threshold_is_validated(tmp_path, capsys):
    base = store(tmp_path / "a.jsonl")
    assert cli_main(["compare", str(base), str(base), "--energy-threshold", "nan"]) == 2
    assert "mbs: error:" in capsys.readouterr().err
