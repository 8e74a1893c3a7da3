"""The `[kubeface]` config section and `--kubeface-*` flags, generated from the settings' keys.

One source of truth: a new setting is a new setting(default, help) field of the core, a storage or a
backend (settings.all_keys() maps them, flat), and Luigi sees it here with its help text for free.
"""

import luigi

from .. import storage
from ..settings import Settings, all_keys

_PARAMETER_TYPES = {
    "str": luigi.Parameter,
    "int": luigi.IntParameter,
    "float": luigi.FloatParameter,
    "bool": luigi.BoolParameter,
    "dict": luigi.DictParameter,
    "list": luigi.ListParameter,
}


def _parameter(key):
    kind = key.field.type if isinstance(key.field.type, str) else key.field.type.__name__
    owner = "" if key.owner == "core" else " (%s)" % key.owner
    return _PARAMETER_TYPES[kind](default=key.default, description=key.help + owner)


# The class name is the config section and the flag prefix: [kubeface], --kubeface-backend.
kubeface = type(
    "kubeface",
    (luigi.Config,),
    {
        "__doc__": "luigi-kubeface settings; documented in luigi.cfg and the README's Settings table.",
        "__module__": __name__,
        **{name: _parameter(key) for name, key in all_keys().items()},
    },
)


def load_settings(overrides=None):
    """Settings from luigi.cfg and flags, with per-task overrides on top."""
    config = kubeface()
    settings = Settings(**{**{name: getattr(config, name) for name in all_keys()}, **(overrides or {})})
    storage.configure(settings)  # the storage options (s3_endpoint_url ...) of every storage this process opens
    return settings
