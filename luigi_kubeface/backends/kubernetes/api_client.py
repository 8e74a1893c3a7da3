"""Connecting to the configured cluster: kubeconfig (with context) or in-cluster config, each failure with its fix."""

from ...errors import ConfigurationError


def load_api_client(settings):
    """A client for the configured cluster: kubeconfig (with context) first, then in-cluster config."""
    from kubernetes import client, config

    configuration = client.Configuration()
    try:
        config.load_kube_config(
            config_file=settings.kubeconfig or None,
            context=settings.kube_context or None,
            client_configuration=configuration,
        )
    except config.ConfigException as error:
        text = str(error)
        if settings.kube_context and "context" in text.lower():
            raise ConfigurationError(_unknown_context(settings)) from None
        if settings.kubeconfig:
            raise ConfigurationError(
                "[kubeface] kubeconfig = %r cannot be used: %s" % (settings.kubeconfig, text)
            ) from None
        try:
            config.load_incluster_config(client_configuration=configuration)
        except config.ConfigException:
            raise ConfigurationError(
                "no Kubernetes configuration found (no kubeconfig, and not running in a cluster): run "
                "`gcloud container clusters get-credentials CLUSTER`, or set [kubeface] kubeconfig"
            ) from None
    except FileNotFoundError:
        raise ConfigurationError(
            "[kubeface] kubeconfig = %r does not exist: set the path of a kubeconfig file "
            "or leave it empty for ~/.kube/config" % settings.kubeconfig
        ) from None
    configuration.retries = 0  # the backend waits and retries itself, with its own backoff
    return client.ApiClient(configuration)


def _unknown_context(settings):
    from kubernetes import config

    try:
        contexts, _ = config.list_kube_config_contexts(config_file=settings.kubeconfig or None)
        known = ", ".join(sorted(c["name"] for c in contexts)) or "none"
    except Exception:  # noqa: BLE001 - the list only improves the message
        known = "unknown"
    return "[kubeface] kube_context = %r is not in the kubeconfig: known contexts are %s" % (
        settings.kube_context,
        known,
    )
