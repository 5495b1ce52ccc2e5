"""Adapters: the only home of kafka-python and prometheus_client imports."""
