"""The README and the repository's luigi.cfg agree with the code about settings."""

import configparser
import dataclasses
import os
import re

from luigi_kubeface.settings import Settings
from support import REPO

DEFAULTS = {f.name: f.default for f in dataclasses.fields(Settings) if f.default is not dataclasses.MISSING}


def _typed(name, text):
    kind = type(DEFAULTS[name])
    if kind is bool:
        return text.strip().lower() in ("true", "1", "yes", "on")
    return text if kind is str else kind(text)


def test_readme_table_shows_the_code_defaults():
    readme = open(os.path.join(REPO, "README.md")).read()
    rows = re.findall(r"^\| (`[a-z_]+`(?:, `[a-z_]+`)*) \| ([^|]+) \|", readme, re.M)
    checked = 0
    for names, values in rows:
        names, values = re.findall(r"`([a-z_]+)`", names), re.findall(r"`([^`]*)`", values)
        if names == ["setting"] or not values:
            continue
        for name, value in zip(names, values):
            assert _typed(name, value) == DEFAULTS[name], "README says %s defaults to %s" % (name, value)
            checked += 1
    assert checked >= 10


def test_luigi_cfg_values_other_than_the_defaults_are_called_examples():
    lines = open(os.path.join(REPO, "luigi.cfg")).read().splitlines()
    config = configparser.ConfigParser()
    config.read_string("\n".join(lines))
    readme = open(os.path.join(REPO, "README.md")).read()
    for name, text in config["kubeface"].items():
        if name not in DEFAULTS or _typed(name, text) == DEFAULTS[name]:
            continue
        line = lines.index("%s = %s" % (name, text))
        assert re.match(r"# An example value: the default is %g\b" % DEFAULTS[name], lines[line - 1]), name
        assert "`%s = %s`" % (name, text) in readme and "`luigi.cfg` is an example" in readme, name


def test_ci_runs_exactly_the_readme_test_command_and_installs_nothing_else():
    readme = open(os.path.join(REPO, "README.md")).read()
    commands = re.findall(r"```bash\n(.*?)\n```", readme, re.S)
    (test_command,) = [c for c in commands if "pytest" in c]
    ci = open(os.path.join(REPO, ".ci", "run")).read().splitlines()
    assert test_command in ci  # the same line, not a variant of it
    assert not [line for line in ci if ("apt-get" in line or "chromium" in line) and not line.startswith("#")]


def test_readme_says_luigi_needs_a_retcode_section_to_fail():
    readme = open(os.path.join(REPO, "README.md")).read()
    assert "`[retcode]` section" in readme
    assert "task_failed" in open(os.path.join(REPO, "luigi.cfg")).read()
