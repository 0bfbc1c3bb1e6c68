import collections

from mercato.bench.storefront import CYCLE, Timings, run_storefront_bench


def test_the_page_mix_is_the_documented_one() -> None:
    counts = collections.Counter(CYCLE)
    assert len(CYCLE) == 20
    assert {k: v * 5 for k, v in counts.items()} == {  # percent
        "product": 50, "search": 20, "home": 10, "cart": 10, "add": 5, "checkout": 5}
    # The checkout slot follows the add-to-cart slot: it pays for what was just added.
    assert CYCLE.index("checkout") == CYCLE.index("add") + 1


def test_failures_are_counted_per_page_and_by_what_went_wrong() -> None:
    t = Timings()
    t.add("product", 12.0, None)
    t.add("product", 900.0, "503")
    t.add("cart", 5.0, "ClientConnectorError")
    assert t.errors == {"product": 1, "cart": 1}
    assert t.failures == {"503": 1, "ClientConnectorError": 1}
    assert t.by_page["product"] == [12.0, 900.0]


def test_a_platform_that_is_not_running_is_a_clear_error(tmp_path, capsys) -> None:
    assert run_storefront_bench(tmp_path, duration_s=1, warmup_s=0) == 2
    assert "start the platform first" in capsys.readouterr().err
