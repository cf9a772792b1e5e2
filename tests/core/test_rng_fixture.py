"""The ``rng`` fixture prints the seed it drew and replays it under ``--seed``."""

import torch

pytest_plugins = ["pytester"]


def test_seed_option_replays_and_the_seed_is_printed(pytester, request):
    pytester.makeconftest((request.config.rootpath / "tests" / "conftest.py").read_text())
    pytester.makepyfile(
        test_draw="""
        import torch

        def test_draw(rng):
            print("value", torch.rand(1, generator=rng).item())
            assert False
    """
    )
    fresh = pytester.runpytest("-p", "no:cacheprovider").stdout.str()
    seed = int(fresh.split("rng seed: ")[1].split()[0])
    value = fresh.split("value ")[1].split()[0]
    replay = pytester.runpytest("-p", "no:cacheprovider", "--seed", str(seed)).stdout.str()
    assert f"rng seed: {seed}" in replay and f"value {value}" in replay
    assert float(value) == torch.rand(1, generator=torch.Generator().manual_seed(seed)).item()
