import textwrap

import pytest

from autoresearch.config import load_task
from autoresearch.errors import ConfigError

from conftest import KARPATHY_CONFIG

GOOD = KARPATHY_CONFIG


def write(tmp_path, text, files=("train.py", "prepare.py")):
    for f in files:
        (tmp_path / f).write_text("x = 1\n")
    (tmp_path / "autoresearch.toml").write_text(textwrap.dedent(text))
    return tmp_path


def test_defaults(tmp_path):
    task = load_task(write(tmp_path, GOOD))
    assert task.timeout == 2 * 300 + 60
    assert task.columns == ("val_bpb",)
    assert task.metrics.memory_key == "peak_vram_mb"
    assert task.agent.kind == "tuner"


def test_seed_004_layout(tmp_path):
    text = GOOD.replace('primary = "val_bpb"\ndirection = "minimize"',
                        'primary = "bin_acc"\ndirection = "maximize"\ntie_break = ["mc_acc"]\ncolumns = ["mc_acc", "bin_acc"]')
    task = load_task(write(tmp_path, text))
    assert task.columns == ("mc_acc", "bin_acc")
    assert [(t.name, t.direction) for t in task.metrics.tie_break] == [("mc_acc", None)]


def test_tie_break_with_its_own_direction(tmp_path):
    text = GOOD + 'tie_break = [{name = "loss", direction = "minimize"}]\n'
    task = load_task(write(tmp_path, text.replace('direction = "minimize"\ntie', 'direction = "maximize"\ntie')))
    assert task.columns == ("val_bpb", "loss")


def test_extra_keys_are_fine(tmp_path):
    assert load_task(write(tmp_path, GOOD + "future_key = 3\n[other]\nx = 1\n"))


@pytest.mark.parametrize("mutate, key, words", [
    (lambda t: t.replace('run = "python train.py"\n', ""), "task.run", "required"),
    (lambda t: t.replace('direction = "minimize"', 'direction = "down"'), "metrics.direction", "'minimize' or 'maximize', got 'down'"),
    (lambda t: t.replace("time_budget = 300", 'time_budget = "long"'), "task.time_budget", "number"),
    (lambda t: t.replace("time_budget = 300", "time_budget = -1"), "task.time_budget", "greater than 0"),
    (lambda t: t.replace('editable = ["train.py"]', 'editable = "train.py"'), "task.editable", "tuple"),
    (lambda t: t.replace('editable = ["train.py"]', 'editable = ["missing.py"]'), "task.editable", "missing.py"),
    (lambda t: t.replace('readonly = ["prepare.py"]', 'readonly = ["train.py"]'), "task.readonly", "also editable"),
    (lambda t: t.replace('[metrics]\nprimary = "val_bpb"\n', "[metrics]\n"), "metrics.primary", "required"),
    (lambda t: t + '[agent]\nkind = "command"\n', "agent", "command"),
])
def test_bad_config_names_file_key_and_fix(tmp_path, mutate, key, words):
    with pytest.raises(ConfigError) as info:
        load_task(write(tmp_path, mutate(GOOD)))
    message = str(info.value)
    assert "autoresearch.toml" in message and key in message and words in message


def test_missing_file_and_bad_toml(tmp_path):
    with pytest.raises(ConfigError, match="no task config"):
        load_task(tmp_path)
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_task(write(tmp_path, "[task\n"))


@pytest.mark.parametrize("text, key, suggestion", [
    (GOOD.replace("editable =", "editabel ="), "task.editabel", "did you mean `editable`?"),
    (GOOD.replace("time_budget", "time_budjet"), "task.time_budjet", "did you mean `time_budget`?"),
    (GOOD.replace("primary", "Primry"), "metrics.Primry", "did you mean `primary`?"),
    (GOOD.replace("[metrics]", "[metric]"), "metric", "did you mean [metrics]?"),
    (GOOD + "[agent]\nkind = \"tuner\"\ncomand = \"x\"\n", "agent.comand", "did you mean `command`?"),
    (GOOD + "tie_break = [{name = \"loss\", directon = \"minimize\"}]\n", "metrics.tie_break.directon", "`direction`"),
    (GOOD.replace("time_budget = 300", "time_budget = 300\nmemory_limit = 4000"), "task.memory_limit",
     "did you mean `memory_limit_mb`?"),
    (GOOD.replace("time_budget = 300\n", "") .replace("[metrics]", "time_budget = 300\n[metrics]")
     .replace('direction = "minimize"', 'direction = "minimize"\nmax_consecutive_crash = 3'),
     "metrics.max_consecutive_crash", "did you mean `max_consecutive_crashes`, which belongs in [task]?"),
    ('run = "python train.py"\n' + GOOD.replace('run = "python train.py"\n', ""), "run", "belongs in [task]"),
])
def test_unknown_key_close_to_a_known_one_is_an_error(tmp_path, text, key, suggestion):
    with pytest.raises(ConfigError) as info:
        load_task(write(tmp_path, text))
    message = str(info.value)
    assert "autoresearch.toml" in message and key in message and suggestion in message, message


def test_unrelated_extra_keys_stay_allowed(tmp_path):
    text = GOOD.replace("time_budget = 300", 'time_budget = 300\neval = "python prepare.py --evaluate"\nfinal_eval = "x"') \
        + "min_delta = 0.001\nnoise_runs = 3\n[report]\ntitle = 'x'\n"
    task = load_task(write(tmp_path, text))
    assert task.config.task.eval == "python prepare.py --evaluate"
    assert task.config.metrics.noise_runs == 3 and task.config.metrics.min_delta == 0.001


def test_crash_limits_memory_and_env_keys(tmp_path):
    task = load_task(write(tmp_path, GOOD))
    assert task.config.task.max_consecutive_crashes == 5
    assert task.config.task.pause_after_env_errors == 3
    assert task.config.task.memory_limit_mb is None
    assert task.config.task.env == () and task.agent.env == ()
    text = GOOD.replace("time_budget = 300", 'time_budget = 300\nmax_consecutive_crashes = 0\npause_after_env_errors = 2\n'
                        'memory_limit_mb = 4096\nenv = ["WANDB_MODE"]') + '[agent]\nenv = ["ANTHROPIC_API_KEY"]\n'
    task = load_task(write(tmp_path, text))
    t = task.config.task
    assert (t.max_consecutive_crashes, t.pause_after_env_errors, t.memory_limit_mb, t.env) == (0, 2, 4096, ("WANDB_MODE",))
    assert task.agent.env == ("ANTHROPIC_API_KEY",)
    for bad, key in (('env = ["NOT A NAME"]', "task.env"), ("memory_limit_mb = 0", "task.memory_limit_mb"),
                     ("max_consecutive_crashes = -1", "task.max_consecutive_crashes")):
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            load_task(write(tmp_path, GOOD.replace("time_budget = 300", f"time_budget = 300\n{bad}")))


def test_executor_section_and_setup(tmp_path):
    task = load_task(write(tmp_path, GOOD))
    assert task.config.executor.kind == "local" and task.config.task.setup is None
    assert task.config.executor.ray_options() == {"num_gpus": 1}
    text = GOOD.replace('time_budget = 300', 'time_budget = 300\nsetup = "python prepare.py"') + textwrap.dedent('''
        [executor]
        kind = "ray"
        address = "ray://head:10001"
        num_gpus = 0
        num_cpus = 1
        resources = {slot = 1}
    ''')
    task = load_task(write(tmp_path, text))
    assert task.config.task.setup == "python prepare.py" and task.config.executor.address == "ray://head:10001"
    assert task.config.executor.ray_options() == {"num_gpus": 0, "num_cpus": 1, "resources": {"slot": 1}}
    with pytest.raises(ConfigError, match="executor.kind"):
        load_task(write(tmp_path, GOOD + '[executor]\nkind = "slurm"\n'))
    with pytest.raises(ConfigError, match="belongs in \\[executor\\]"):
        load_task(write(tmp_path, GOOD.replace('time_budget = 300', 'time_budget = 300\nnum_gpus = 1')))


def test_the_plateau_default_has_one_source():
    """`[agent] plateau` defaults to memo.DEFAULT_PLATEAU (the one plateau rule), not a second literal."""
    import ast
    import inspect

    from autoresearch import config, memo

    tree = ast.parse(inspect.getsource(config.AgentSection))
    [field] = [n.value for n in ast.walk(tree) if isinstance(n, ast.AnnAssign) and n.target.id == "plateau"]
    [default] = [k.value for k in field.keywords if k.arg == "default"]
    assert isinstance(default, ast.Name) and default.id == "DEFAULT_PLATEAU"
    assert config.AgentSection().plateau == memo.DEFAULT_PLATEAU


def test_noise_aware_by_default_and_deterministic_opts_out():
    from autoresearch.config import MetricsSection

    assert MetricsSection(primary="acc", direction="maximize").noise_runs == 2  # the baseline runs twice
    det = MetricsSection(primary="acc", direction="maximize", deterministic=True)
    assert det.noise_runs == 1 and det.deterministic
    assert MetricsSection(primary="acc", direction="maximize", deterministic=True, noise_runs=1).noise_runs == 1
    assert MetricsSection(primary="acc", direction="maximize", noise_runs=1).noise_runs == 1  # one, floor unknown
    with pytest.raises(ValueError, match="deterministic = true says a second run"):
        MetricsSection(primary="acc", direction="maximize", deterministic=True, noise_runs=2)
