from autoresearch import results_tsv
from autoresearch.records import Experiment, Status


def exp(i, status, metrics, desc="x", mem=1.26):
    return Experiment(iteration=i, commit=f"{i:07d}abcdef", parent="p", status=status,
                      description=desc, metrics=metrics, memory_gb=mem)


def test_seed_004_table():
    rows = [
        exp(0, Status.KEEP, {"mc_acc": 0.286, "bin_acc": 0.811}, "baseline (wide arch, SGD lr=0.01)", 0.3),
        exp(1, Status.CRASH, {"mc_acc": 0.5}, "doubled width\t(OOM)\nsecond line", 9.9),
    ]
    text = results_tsv.render(rows, ["mc_acc", "bin_acc"])
    lines = text.splitlines()
    assert lines[0] == "commit\tmc_acc\tbin_acc\tmemory_gb\tstatus\tdescription"
    assert lines[1] == "0000000\t0.286000\t0.811000\t0.3\tkeep\tbaseline (wide arch, SGD lr=0.01)"
    assert lines[2] == "0000001\t0.000000\t0.000000\t0.0\tcrash\tdoubled width (OOM) second line"
    assert all(len(line.split("\t")) == 6 for line in lines)


def test_missing_or_nan_metric_shows_zero():
    text = results_tsv.render([exp(0, Status.DISCARD, {"a": float("nan")})], ["a", "b"])
    assert text.splitlines()[1].split("\t")[1:3] == ["0.000000", "0.000000"]
