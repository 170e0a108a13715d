"""Metrics, in one place: see ``modelport.monitoring.metrics``."""

from modelport.monitoring.metrics import Metrics

__all__ = ["Metrics"]
