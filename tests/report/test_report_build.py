"""The HTML report: self-contained, every section present, useful with one kind of input only."""

import base64
from html.parser import HTMLParser

import pytest
from synthetic_records import kernel_record, synthetic_projection, synthetic_sweep

from mbs_layers.cli import main as cli_main
from mbs_layers.records import RecordStore
from mbs_layers.report import build_report

SECTIONS = ("recommendation", "accuracy", "latency", "roofline", "speedup", "gpu-state", "tables")


class Page(HTMLParser):
    """Collects ids, <img> sources, and every URL-bearing attribute of a page."""

    def __init__(self, text):
        super().__init__()
        self.ids, self.images, self.urls, self.tags = set(), [], [], set()
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.add(tag)
        self.ids.add(attrs.get("id"))
        if tag == "img":
            self.images.append(attrs.get("src", ""))
        self.urls += [v for k, v in attrs.items() if k in ("src", "href", "srcset", "data", "action")]


def store(path, records):
    s = RecordStore(path)
    for r in records:
        s.append(r)
    return path


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("inputs")
    kernels = synthetic_sweep(widths=(256, 512), tokens=(16, 512))
    kernels.append(kernel_record("monarch", {"nblocks": 3}, n=256, status="failed: wrong result"))
    return store(tmp / "kernels.jsonl", kernels), store(tmp / "accuracy.jsonl", synthetic_projection(n=256))


@pytest.fixture(scope="module")
def full_report(tmp_path_factory, inputs):
    text = build_report(list(inputs), tmp_path_factory.mktemp("full") / "report.html").read_text()
    return text, Page(text)


def render(tmp_path, paths):
    text = build_report(paths, tmp_path / "report.html").read_text()
    return text, Page(text)


def test_full_report_is_self_contained_and_has_every_section(full_report):
    text, page = full_report
    assert set(SECTIONS) <= page.ids
    assert all(u.startswith(("data:", "#")) for u in page.urls), [u[:40] for u in page.urls]
    assert not {"script", "link", "iframe"} & page.tags
    # error-vs-params, accuracy-vs-latency, roofline and at least one heat-map
    assert len(page.images) >= 4
    for src in page.images:
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert "failed: wrong result" in text and "No accuracy records" not in text


def recommendation_cells(text):
    """(row label, [recommended format per budget]) of the page's recommendation matrices."""
    section = text[text.index('id="recommendation"') : text.index('id="accuracy"')]
    rows = []
    for chunk in section.split("<tr><th>")[1:]:
        label = chunk[: chunk.index("</th>")]
        rows.append((label, [c.split("<")[0] for c in chunk.split('class="fmt">')[1:]]))
    return rows


def test_recommendation_picks_the_constructed_winner(tmp_path):
    # errors: unstructured < lowrank < monarch; speed: unstructured slower than dense,
    # lowrank and monarch faster -> lowrank at every budget; with nothing faster than dense
    # (64 tokens) the lowest error wins: unstructured.
    speed = {"dense": (1.0, 1.0), "unstructured": (0.3, 0.3), "lowrank": (1.3, 0.9), "monarch": (1.1, 0.8)}
    kernels, accuracy = [], synthetic_projection(n=256, seeds=(0,))
    for record in accuracy:
        for tokens, column in ((512, 0), (64, 1)):
            s = speed[record["format"]][column]
            kernels.append(
                kernel_record(
                    record["format"], record["hparams"], n=256, tokens=tokens, median_s=1e-3 / s, speedup_vs_dense=s
                )
            )
    text, _ = render(tmp_path, [store(tmp_path / "k.jsonl", kernels), store(tmp_path / "a.jsonl", accuracy)])
    assert "lowest error among formats at least as fast as dense" in text
    rows = dict(recommendation_cells(text))
    assert rows["512"] == ["lowrank"] * 4
    assert rows["64"] == ["unstructured"] * 4


def test_kernel_only_report_is_still_useful(tmp_path, inputs):
    text, page = render(tmp_path, [inputs[0]])
    assert set(SECTIONS) <= page.ids and len(page.images) >= 2
    assert "No accuracy records in the inputs" in text and "Kernel results only" in text


def test_accuracy_only_report_is_still_useful(tmp_path, inputs):
    text, page = render(tmp_path, [inputs[1]])
    assert len(page.images) == 1 and "Accuracy results only" in text
    assert "No ok kernel measurements" in text


def test_report_command_writes_the_page(tmp_path, inputs, capsys):
    out = tmp_path / "r.html"
    assert cli_main(["report", str(inputs[1]), "--out", str(out), "--title", "T", "--budgets", "0.3"]) == 0
    assert str(out) in capsys.readouterr().out
    text = out.read_text()
    assert "<title>T</title>" in text and "≤ 30% of dense" in text and "≤ 50% of dense" not in text


def test_many_sources_are_split_over_figures_of_limited_panels(tmp_path, monkeypatch):
    monkeypatch.setattr("mbs_layers.report.build.PANELS", 2)
    records = [r | {"source": f"layer{i}"} for i in range(3) for r in synthetic_projection(n=64, seeds=(0,))]
    text, page = render(tmp_path, [store(tmp_path / "a.jsonl", records)])
    assert len(page.images) == 2
    assert "(panels 1–2 of 3)" in text and "(panels 3–3 of 3)" in text


def test_budgets_outside_zero_one_are_refused(tmp_path, inputs):
    with pytest.raises(ValueError, match=r"budgets=1.5 is out of range"):
        build_report([inputs[1]], tmp_path / "r.html", budgets=(0.5, 1.5))
