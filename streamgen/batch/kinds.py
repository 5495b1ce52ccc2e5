"""The batch models' names, in a module of their own: the command line lists them without
importing torch (``streamgen backfill --help``)."""

MODEL_KINDS = ("gan", "vae")

__all__ = ["MODEL_KINDS"]
