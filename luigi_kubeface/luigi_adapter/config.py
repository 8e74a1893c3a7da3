"""The `[kubeface]` config section and `--kubeface-*` flags, generated from Settings' fields.

One source of truth: a new setting is a new field on Settings, and Luigi sees it here for free.
"""

import dataclasses

import luigi

from .. import storage
from ..settings import Settings

_PARAMETER_TYPES = {"str": luigi.Parameter, "int": luigi.IntParameter, "float": luigi.FloatParameter,
                    "bool": luigi.BoolParameter, "dict": luigi.DictParameter, "list": luigi.ListParameter}


def _parameter(field):
    kind = field.type if isinstance(field.type, str) else field.type.__name__
    default = field.default if field.default is not dataclasses.MISSING else field.default_factory()
    return _PARAMETER_TYPES[kind](default=default, description="see luigi_kubeface.settings.Settings")


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
    settings = settings.replace(**overrides) if overrides else settings
    storage.configure(settings)  # the storage options (s3_endpoint_url ...) of every storage this process opens
    return settings
