"""The `[kubeface]` config section and `--kubeface-*` flags, generated from Settings' fields.

One source of truth: a new setting is a new field on Settings, and Luigi sees it here for free.
"""

import dataclasses

import luigi

from ..settings import Settings

_PARAMETER_TYPES = {"bool": luigi.BoolParameter, "str": luigi.Parameter, "int": luigi.IntParameter, "float": luigi.FloatParameter}


def _parameter(field):
    kind = field.type if isinstance(field.type, str) else field.type.__name__
    return _PARAMETER_TYPES[kind](default=field.default, description="see luigi_kubeface.settings.Settings")


# The class name is the config section and the flag prefix: [kubeface], --kubeface-backend.
kubeface = type("kubeface", (luigi.Config,), {
    "__doc__": "luigi-kubeface settings; documented in luigi.cfg and luigi_kubeface/settings.py.",
    "__module__": __name__,
    **{f.name: _parameter(f) for f in dataclasses.fields(Settings)},
})


def load_settings(overrides=None):
    """Settings from luigi.cfg and flags, with per-task overrides on top."""
    config = kubeface()
    settings = Settings(**{f.name: getattr(config, f.name) for f in dataclasses.fields(Settings)})
    return settings.replace(**overrides) if overrides else settings
