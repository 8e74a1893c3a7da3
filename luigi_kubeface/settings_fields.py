"""How a `[kubeface]` key is declared, once: its default and its help text, and the one map of keys to owners.

The core (settings.py), each storage and each backend declare their own keys in a frozen dataclass,
each field made by setting(default, help). The help text is what Luigi shows for `--kubeface-<key>`,
what luigi.cfg says above the key and what the README's table says (tests/test_docs.py checks both).
key_map() flattens the owners into the one flat `[kubeface]` section, and refuses a key two owners declare.
"""

import dataclasses
import functools
from typing import NamedTuple

from .errors import ConfigurationError

COMPOSED = "composed"  # metadata of Settings' own fields that hold other owners' settings, not keys


def setting(default, help):
    """A field of a settings dataclass: its default and its help (one sentence or two, plain text)."""
    metadata = {"help": " ".join(help.split())}
    if isinstance(default, (dict, list)):  # a fresh copy per object, as dataclasses require
        return dataclasses.field(default_factory=functools.partial(type(default), default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def default_of(field):
    return field.default if field.default is not dataclasses.MISSING else field.default_factory()


def help_of(field):
    return field.metadata.get("help", "")


class Key(NamedTuple):
    """One `[kubeface]` key: its name, who declares it ("core", "storage s3", "backend kubernetes"), its field."""

    name: str
    owner: str
    declared_by: type
    field: dataclasses.Field

    @property
    def default(self):
        return default_of(self.field)

    @property
    def help(self):
        return help_of(self.field)


@functools.lru_cache(maxsize=8)
def key_map(owners):
    """{key: Key} of owners ((label, dataclass), ...) in order: a key two owners declare is refused, naming both."""
    keys = {}
    for label, declared_by in owners:
        for field in dataclasses.fields(declared_by):
            if field.metadata.get(COMPOSED):
                continue
            if field.name in keys:
                raise ConfigurationError(
                    "[kubeface] %s is declared twice, by the %s settings (%s) and by the %s settings (%s): the "
                    "section is flat, so rename one of them"
                    % (
                        field.name,
                        keys[field.name].owner,
                        keys[field.name].declared_by.__qualname__,
                        label,
                        declared_by.__qualname__,
                    )
                )
            if not help_of(field):
                raise ConfigurationError(
                    "%s.%s has no help text: declare it as setting(default, help)"
                    % (declared_by.__qualname__, field.name)
                )
            keys[field.name] = Key(field.name, label, declared_by, field)
    return keys


def values_of(settings_object):
    """{key: value} of one owner's settings object (None: an owner without keys)."""
    if settings_object is None:
        return {}
    return {f.name: getattr(settings_object, f.name) for f in dataclasses.fields(settings_object)}


def not_default(values, keys):
    """values without those equal to their key's default: what a user set, kept for another owner."""
    return {name: value for name, value in values.items() if _plain(value) != keys[name].default}


def _plain(value):
    """Luigi's frozen JSON (a tuple, a FrozenOrderedDict) as the list or dict a default is."""
    if hasattr(value, "items"):
        return dict(value)
    return list(value) if isinstance(value, tuple) else value
