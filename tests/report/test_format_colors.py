"""Report colours are keyed by format name: adding a format never recolours the others."""

from mbs_layers.report.figures import COLOR_SLOTS, format_colors


def test_a_new_format_does_not_recolour_the_others():
    known = format_colors(["dense", "lowrank", "monarch"])
    more = format_colors(["dense", "lowrank", "monarch", "aaa_new", "diag_plus_lowrank"])
    assert all(more[name] == color for name, color in known.items())
    assert format_colors(["aaa_new"]) == {"aaa_new": more["aaa_new"]}


def test_listed_formats_have_distinct_colours():
    colors = format_colors(COLOR_SLOTS)
    assert len(set(colors.values())) == len(COLOR_SLOTS)
