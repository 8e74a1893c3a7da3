"""The README and the repository's luigi.cfg agree with the code about settings."""

import configparser
import json
import os
import re

import settings_docs
from luigi_kubeface.settings import all_keys
from support import REPO, read_text

DEFAULTS = {name: key.default for name, key in all_keys().items()}
REWRITE = "the settings' help texts changed: run `python tests/settings_docs.py` to rewrite README.md and luigi.cfg"


def _typed(name, text):
    kind = type(DEFAULTS[name])
    if kind is bool:
        return text.strip().lower() in ("true", "1", "yes", "on")
    if kind in (dict, list):
        return json.loads(text)
    return text if kind is str else kind(text)


def test_the_readme_has_a_table_of_every_owners_keys_with_their_help_texts():
    readme = read_text(os.path.join(REPO, "README.md"))
    for owner, _, _ in settings_docs.groups():
        assert settings_docs.readme_table(owner) in readme, REWRITE


def test_luigi_cfg_says_each_keys_help_text_above_it_and_every_key_is_there():
    section = settings_docs.cfg_section(read_text(os.path.join(REPO, "luigi.cfg")))
    assert section == settings_docs.luigi_cfg_section(settings_docs.examples_in(section)) + "\n", REWRITE
    assert set(DEFAULTS) == set(re.findall(r"^(?:# )?([a-z_0-9]+) =", section, re.M))


def test_each_luigi_parameter_describes_its_key_with_the_help_text():
    from luigi_kubeface.luigi_adapter.config import kubeface

    for name, key in all_keys().items():
        assert getattr(kubeface, name).description.startswith(key.help), name
    assert "see luigi_kubeface.settings" not in kubeface.image.description


def test_readme_table_shows_the_code_defaults():
    readme = read_text(os.path.join(REPO, "README.md"))
    rows = re.findall(r"^\| (`[a-z_0-9]+`(?:, `[a-z_0-9]+`)*) \| ([^|]+) \|", readme, re.M)
    checked = 0
    for names, values in rows:
        names, values = re.findall(r"`([a-z_0-9]+)`", names), re.findall(r"`([^`]*)`", values)
        if names == ["setting"] or not values:
            continue
        for name, value in zip(names, values):
            assert _typed(name, value) == DEFAULTS[name], "README says %s defaults to %s" % (name, value)
            checked += 1
    assert checked >= 10


def test_luigi_cfg_values_other_than_the_defaults_are_called_examples():
    lines = read_text(os.path.join(REPO, "luigi.cfg")).splitlines()
    config = configparser.ConfigParser()
    config.read_string("\n".join(lines))
    readme = read_text(os.path.join(REPO, "README.md"))
    for name, text in config["kubeface"].items():
        if name not in DEFAULTS or _typed(name, text) == DEFAULTS[name]:
            continue
        line = lines.index("%s = %s" % (name, text))
        assert re.match(
            r"# An example value: the default is %s\b" % settings_docs.shown(DEFAULTS[name]), lines[line - 1]
        ), name
        assert "`%s = %s`" % (name, text) in readme and "`luigi.cfg` is an example" in readme, name


def test_ci_runs_exactly_the_readme_test_command_and_installs_nothing_else():
    readme = read_text(os.path.join(REPO, "README.md"))
    commands = re.findall(r"```bash\n(.*?)\n```", readme, re.S)
    (test_command,) = [c for c in commands if "pytest" in c]
    ci = read_text(os.path.join(REPO, ".ci", "run")).splitlines()
    assert test_command in ci  # the same line, not a variant of it
    assert not [line for line in ci if ("apt-get" in line or "chromium" in line) and not line.startswith("#")]


def test_readme_says_luigi_needs_a_retcode_section_to_fail():
    readme = read_text(os.path.join(REPO, "README.md"))
    assert "`[retcode]` section" in readme
    assert "task_failed" in read_text(os.path.join(REPO, "luigi.cfg"))
