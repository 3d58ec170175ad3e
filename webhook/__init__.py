"""Mutating admission webhook that wires each group's pods to its MLflow server."""

__version__ = "0.2.0"

API_GROUP = "mlflow.primehub.io"
API_VERSION = "v1alpha1"
KIND = "MLflowSetting"
PLURAL = "mlflowsettings"
PREFIX = API_GROUP + "/"
