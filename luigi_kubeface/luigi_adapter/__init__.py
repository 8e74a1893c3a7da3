"""The Luigi adapter: map tasks, their element tasks, targets over results, the [kubeface] config."""

from .config import kubeface, load_settings
from .tasks import KubefaceElement, KubefaceJob, KubefaceMapTask

__all__ = ["KubefaceMapTask", "KubefaceElement", "KubefaceJob", "kubeface", "load_settings"]
