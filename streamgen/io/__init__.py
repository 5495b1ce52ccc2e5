"""Adapters: the only home of kafka-python and prometheus_client imports (apart from the
topic administration of the local broker launcher, :mod:`streamgen.localbroker`)."""
