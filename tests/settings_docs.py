"""The README's settings tables and luigi.cfg's [kubeface] section, written from the settings' help texts.

Each key's default and help are declared once (setting(default, help) in its owner's dataclass);
tests/test_docs.py checks that the files say what this writes. After adding or changing a setting:
`python tests/settings_docs.py` rewrites both.
"""

import json
import os
import re
import sys
import textwrap

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from luigi_kubeface.settings import all_keys  # noqa: E402 - after the checkout is on the path
from support import read_text, write_text  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README, LUIGI_CFG = os.path.join(REPO, "README.md"), os.path.join(REPO, "luigi.cfg")
BEGIN, END = "<!-- settings table of %s: written by tests/settings_docs.py -->", "<!-- end of the settings table -->"


def groups():
    """[(owner, its settings dataclass, [Key, ...])] in declaration order: core, storages, backends."""
    found = {}
    for key in all_keys().values():
        found.setdefault(key.owner, (key.owner, key.declared_by, []))[2].append(key)
    return list(found.values())


def shown(value):
    """A default as luigi.cfg spells it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "%g" % value
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)


def readme_table(owner):
    (keys,) = [keys for name, _, keys in groups() if name == owner]
    rows = [
        "| `%s` | %s | %s |" % (k.name, "`%s`" % shown(k.default) if shown(k.default) else "(empty)", k.help)
        for k in keys
    ]
    return "\n".join([BEGIN % owner, "| setting | default | meaning |", "|---|---|---|", *rows, END])


def _comment(text):
    return textwrap.wrap(text, 98, initial_indent="# ", subsequent_indent="# ", break_on_hyphens=False)


def luigi_cfg_section(examples):
    """[kubeface] as luigi.cfg writes it; examples: {key: text} set to other values than the defaults."""
    lines = ["[kubeface]"]
    for owner, declared_by, keys in groups():
        lines += [""] * (len(lines) > 1) + ["# -- %s %s" % (owner, "-" * (94 - len(owner)))]
        lines += _comment(declared_by.__doc__) + ["#"]
        commented = "# " if owner.startswith("backend ") else ""  # another backend's keys: shown, not set
        for key in keys:
            lines += _comment(key.help)
            if key.name in examples:
                lines += ["# An example value: the default is %s." % shown(key.default)]
            lines.append(("%s%s = %s" % (commented, key.name, examples.get(key.name, shown(key.default)))).rstrip())
    return "\n".join(lines) + "\n"


def cfg_section(text):
    """luigi.cfg's [kubeface] section, from its header line to the next section's (its blank line included)."""
    start = re.search(r"^\[kubeface\]$", text, re.M).start()
    return text[start : re.compile(r"^\[", re.M).search(text, start + 1).start()]


def examples_in(section):
    """{key: text} of the keys the section sets to a value other than their default."""
    keys = all_keys()
    found = dict(re.findall(r"^([a-z_0-9]+) = (.*)$", section, re.M))
    return {k: v for k, v in found.items() if k in keys and v != shown(keys[k].default)}


def rewrite():
    readme = read_text(README)
    for owner, _, _ in groups():
        if BEGIN % owner in readme:
            start = readme.index(BEGIN % owner)
            readme = readme[:start] + readme_table(owner) + readme[readme.index(END, start) + len(END) :]
    cfg = read_text(LUIGI_CFG)
    section = cfg_section(cfg)
    cfg = cfg.replace(section, luigi_cfg_section(examples_in(section)) + "\n")
    write_text(README, readme)
    write_text(LUIGI_CFG, cfg)


if __name__ == "__main__":
    rewrite()
