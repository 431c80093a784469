"""The latency benchmark's report: the whole-ask speedup of each interleaved round beside the
pooled one, so that a figure the host's load moved shows it."""


def test_each_rounds_speedup_pairs_the_rounds_both_runtimes_ran(latency_bench):
    baseline = {0: 60.0, 1: 90.0, 2: 56.0}
    candidate = {0: 20.0, 2: 28.0}          # round 1 of this runtime failed
    assert latency_bench.ratios_by_round(baseline, candidate) == [3.0, 2.0]
    assert latency_bench.ratios_by_round(baseline, {}) == []


def test_the_table_prints_each_rounds_speedup_when_there_are_several(latency_bench):
    key = "onnxruntime/builtin/fp32"
    printed = latency_bench.table([], {key: 2.5}, {key: [3.0, 2.0]})
    assert f"whole ask, {key}: 2.50x faster than transformers generate (round by round: 3.00x, 2.00x)" in printed
    one = latency_bench.table([], {key: 2.5}, {key: [2.5]})
    assert "round by round" not in one and "2.50x faster" in one


def test_a_pooled_speedup_the_hosts_load_moved_is_flagged(latency_bench):
    """Rounds that disagree, or a pooled figure outside every round's own (the pooled medians
    mixing one runtime's slow round with the other's fast one), are the host, not the code."""
    assert not latency_bench.load_moved(2.9, [2.96, 2.83, 2.86])
    assert latency_bench.load_moved(3.15, [2.96, 2.83, 2.86])      # outside every round
    assert latency_bench.load_moved(3.1, [3.60, 2.04])             # rounds disagree
    assert not latency_bench.load_moved(3.5, [3.5])                # one round: nothing to compare
    key = "onnxruntime/builtin/fp32"
    printed = latency_bench.table([], {key: 3.15}, {key: [2.96, 2.83, 2.86]})
    assert "the host's load moved this figure (rounds 2.83x-2.96x): the side-by-side one is the rounds' median, 2.86x" in printed
    assert "load moved" not in latency_bench.table([], {key: 2.9}, {key: [2.96, 2.83, 2.86]})
