"""Configs that used to be accepted and were wrong: each a clear error naming the file and field (issue 12)."""

from __future__ import annotations

import pytest

from autoresearch.config import load_task
from autoresearch.errors import ConfigError

from conftest import TINY_CONFIG


@pytest.mark.parametrize("old, new, field, says", [
    ('run = "python train.py"', 'run = "   "', "task.run", "blank"),
    ("time_budget = 5", "time_budget = true", "task.time_budget", "not true/false"),
    ("time_budget = 5", "time_budget = inf", "task.time_budget", "finite"),
    ("timeout = 20", "timeout = inf", "task.timeout", "finite"),
    ('editable = ["train.py"]', 'editable = [".git/config"]', "task.editable", "inside .git"),
    ('direction = "maximize"', 'direction = "maximize"\ntie_break = ["score"]', "metrics", "tie_break lists the primary"),
    ("timeout = 20", "timeout = 2", "task", "below time_budget"),
])
def test_accepted_but_wrong_configs_are_clear_errors(make_task, old, new, field, says):
    task = make_task()
    (task / "autoresearch.toml").write_text(TINY_CONFIG.replace(old, new))
    with pytest.raises(ConfigError) as caught:
        load_task(task)
    message = str(caught.value)
    assert "autoresearch.toml" in message and field in message and says in message, message
