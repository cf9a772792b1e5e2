"""Fine-tuning experiment and the packaged encoder it uses (skipped without the model package)."""

import pytest
import torch

from mbs_layers.accuracy import bert
from mbs_layers.accuracy.finetune import finetune_table, run_finetune
from mbs_layers.accuracy.presets import FinetunePreset
from mbs_layers.cli import main as cli_main
from mbs_layers.records import ACCURACY_KEYS, RecordStore

pytestmark = pytest.mark.skipif(bert.missing_reason() is not None, reason=str(bert.missing_reason()))


@pytest.fixture(scope="module")
def encoder():
    return bert.load()


def test_tokenizer_matches_bert_uncased_ids(encoder):
    _, tokenizer = encoder
    ids, mask = tokenizer(["A man is playing a guitar.", "Héllo!"])
    # ids of bert-base-uncased's vocabulary: [CLS] a man is playing a guitar . [SEP]
    assert ids[0].tolist() == [101, 1037, 2158, 2003, 2652, 1037, 2858, 1012, 102]
    assert ids[1].tolist()[:4] == [101, 7592, 999, 102] and mask[1].tolist() == [1] * 4 + [0] * 5


def test_encoder_embeds_paraphrases_close(encoder):
    model, tokenizer = encoder
    with torch.no_grad():
        e = model(*tokenizer(["A man is playing a guitar.", "Someone plays the guitar.", "Stocks fell sharply today."]))
    assert torch.allclose(e.norm(dim=-1), torch.ones(3))
    assert e[0] @ e[1] > 0.6 > 0.2 > e[0] @ e[2]


def test_finetuning_lowers_the_distillation_loss(tmp_path):
    text = tmp_path / "corpus.txt"
    topics = ["cats", "dogs", "rivers", "mountains", "music", "bread", "trains", "rain"] * 4
    text.write_text("\n".join(f"Sentence number {i} talks about {w} and other things." for i, w in enumerate(topics)))
    preset = FinetunePreset(
        data=str(text),
        layers=(5,),
        train_samples=16,
        test_samples=8,
        steps=6,
        batch_size=8,
        lr=3e-4,
        budgets=(0.1,),
        formats=("dense", "lowrank"),
    )
    records = RecordStore(run_finetune(tmp_path / "ft.jsonl", preset=preset, progress=False)).records()
    assert all(set(ACCURACY_KEYS) <= set(r) and r["status"] == "ok" for r in records)
    value = {r["metric"]: r["value"] for r in records}
    assert {r["format"] for r in records} == {"lowrank"}  # dense is the teacher
    assert value["distill_loss_after"] < value["distill_loss_before"]
    assert value["embedding_cosine_before"] < value["embedding_cosine_after"] <= 1 + 1e-6
    assert "lowrank" in finetune_table(records)


def test_mbs_accuracy_cli_runs_a_preset(tmp_path, capsys, monkeypatch):
    from mbs_layers.accuracy import presets

    tiny = FinetunePreset(train_samples=8, test_samples=4, steps=1, batch_size=4, formats=("lowrank",))
    monkeypatch.setitem(presets.PRESETS["finetune"], "smoke", tiny)
    assert cli_main(["accuracy", "--experiment", "finetune", "--out", str(tmp_path / "f.jsonl"), "--no-progress"]) == 0
    assert "distill_loss_after" in capsys.readouterr().out and (tmp_path / "f.csv").exists()


def test_the_seed_does_not_redraw_the_test_split(tmp_path):
    """Before tuning the student is the (deterministic) projection: equal held-out loss over seeds
    means both seeds saw the same test sentences."""
    preset = FinetunePreset(
        layers=(5,),
        train_samples=8,
        test_samples=8,
        steps=1,
        batch_size=4,
        budgets=(0.25,),
        seeds=(0, 1),
        formats=("lowrank",),
    )
    records = RecordStore(run_finetune(tmp_path / "ft.jsonl", preset=preset, progress=False)).records()
    before = {r["seed"]: r["value"] for r in records if r["metric"] == "distill_loss_before"}
    assert set(before) == {0, 1} and before[0] == pytest.approx(before[1], rel=1e-6)
    assert all(r["storage_bytes"] == 4 * r["param_count"] for r in records)
