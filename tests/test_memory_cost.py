"""Memory as a soft constraint: the rule, its reason string, its config, and the loop applying it."""

import pytest

from autoresearch.config import load_task
from autoresearch.decision import Rules, decide
from autoresearch.errors import ConfigError
from autoresearch.memory_cost import MemoryRule
from autoresearch.records import Status
from autoresearch.verdict import Reason, Verdict

from conftest import tiny_config
from helpers import ScriptedAgent, run, set_consts

RULE = MemoryRule("peak_vram_mb", soft_limit_mb=1024, gain_per_gb=0.01)
RULES = Rules("acc", "maximize", memory=RULE)


def test_growth_within_the_soft_limit_is_free():
    assert RULE.required_gain(1000, 500) == 0.0
    d = decide({"acc": 0.801, "peak_vram_mb": 1000.0}, {"acc": 0.8, "peak_vram_mb": 500.0}, RULES)
    assert d.verdict.reason is Reason.IMPROVED


def test_growth_beyond_the_limit_must_buy_gain():
    # 2048 MB above the limit of 1024 = 2 GB: needs 0.02 of acc
    assert RULE.required_gain(3072, 500) == pytest.approx(0.02)
    small = decide({"acc": 0.81, "peak_vram_mb": 3072.0}, {"acc": 0.8, "peak_vram_mb": 500.0}, RULES)
    assert small.status is Status.DISCARD and small.verdict.reason is Reason.MEMORY_COST
    assert small.reason == ("acc gain 0.010000 does not pay for 2048 MB of peak_vram_mb above the soft "
                            "limit 1024 MB (needs 0.020000)")
    big = decide({"acc": 0.83, "peak_vram_mb": 3072.0}, {"acc": 0.8, "peak_vram_mb": 500.0}, RULES)
    assert big.verdict.reason is Reason.IMPROVED


def test_only_growth_beyond_the_best_costs():
    # The best already holds 3000 MB: a candidate at 3072 pays for 72 MB only.
    assert RULE.required_gain(3072, 3000) == pytest.approx(72 / 1024 * 0.01)
    assert decide({"acc": 0.801, "peak_vram_mb": 3072.0}, {"acc": 0.8, "peak_vram_mb": 3000.0},
                  RULES).verdict.reason is Reason.IMPROVED
    # less memory than the best, beyond the limit: nothing to pay
    assert RULE.required_gain(2000, 3000) == 0.0


def test_tie_break_and_simpler_keeps_pay_too():
    rules = Rules("acc", "maximize", (("f1", "maximize"),), memory=RULE)
    d = decide({"acc": 0.8, "f1": 0.6, "peak_vram_mb": 4096.0}, {"acc": 0.8, "f1": 0.5, "peak_vram_mb": 100.0}, rules)
    assert d.verdict.reason is Reason.MEMORY_COST
    d = decide({"acc": 0.8, "peak_vram_mb": 4096.0}, {"acc": 0.8, "peak_vram_mb": 100.0}, RULES, simpler=True)
    assert d.verdict.reason is Reason.MEMORY_COST


def test_no_memory_reported_or_no_rule_is_unaffected():
    assert decide({"acc": 0.81}, {"acc": 0.8, "peak_vram_mb": 100.0}, RULES).verdict.reason is Reason.IMPROVED
    assert decide({"acc": 0.81, "peak_vram_mb": float("nan")}, {"acc": 0.8}, RULES).verdict.reason is Reason.IMPROVED
    plain = Rules("acc", "maximize")
    assert decide({"acc": 0.81, "peak_vram_mb": 1e6}, {"acc": 0.8}, plain).verdict.reason is Reason.IMPROVED
    # worse stays worse, and is not called a memory cost
    assert decide({"acc": 0.7, "peak_vram_mb": 1e6}, {"acc": 0.8}, RULES).verdict.reason is Reason.WORSE


def test_reason_round_trips_byte_for_byte():
    d = decide({"val_bpb": 0.99, "mem": 9000.0}, {"val_bpb": 1.0, "mem": 10.0},
               Rules("val_bpb", "minimize", memory=MemoryRule("mem", 2048, 0.5)))
    text = d.reason
    parsed = Verdict.parse("discard", text)
    assert parsed.reason is Reason.MEMORY_COST and parsed.render() == text
    # other sentences still parse as before
    assert Verdict.parse("discard", "acc gain 0.001000 is within the noise floor 0.004000").reason is Reason.WITHIN_NOISE
    assert Verdict.parse("discard", "acc worse").reason is Reason.WORSE


CONFIG = tiny_config(timeout=30)


@pytest.mark.parametrize("extra, words", [
    ("memory_soft_limit_mb = 1024\n", "memory_gain_per_gb"),
    ("memory_gain_per_gb = 0.1\n", "memory_soft_limit_mb"),
    ("memory_soft_limit_mb = -5\nmemory_gain_per_gb = 0.1\n", "memory_soft_limit_mb"),
    ("memory_soft_limit_mb = 1024\nmemory_gain_per_gb = -1\n", "memory_gain_per_gb"),
])
def test_bad_memory_keys_name_the_file_and_key(tmp_path, extra, words):
    (tmp_path / "train.py").write_text("x = 1\n")
    (tmp_path / "autoresearch.toml").write_text(CONFIG + extra)
    with pytest.raises(ConfigError) as e:
        load_task(tmp_path)
    assert "autoresearch.toml" in str(e.value) and words in str(e.value)


def test_loop_discards_a_gain_that_does_not_pay_for_its_memory(make_task):
    train = '''\
        X = 1.0
        MEM = 500.0
        print("---")
        print(f"score: {X:.6f}")
        print(f"peak_vram_mb: {MEM:.1f}")
    '''
    task = make_task(train=train, config=CONFIG + "memory_soft_limit_mb = 1024\nmemory_gain_per_gb = 1.0\n")

    def edit(x, mem):
        return set_consts(f"x {x} mem {mem}", X=x, MEM=mem)

    # +0.5 for 2 GB over the limit (needs 2.0): discard; +3.0 for the same: keep
    loop, records = run(task, ScriptedAgent(edit(1.5, 3072.0), edit(4.0, 3072.0)), 2)
    assert [r.status for r in records] == [Status.KEEP, Status.DISCARD, Status.KEEP]
    assert Verdict.of_record(records[1]).reason is Reason.MEMORY_COST
    assert "does not pay for 2048 MB of peak_vram_mb" in records[1].reason

    from autoresearch.analysis.report import render_report
    html = render_report(loop.task, loop.store)
    assert "Memory is a soft constraint: peak_vram_mb above 1024 MB must buy 1 of the primary per GB" in html
    assert "it turned 1 gain(s) into discards (#1)" in html
