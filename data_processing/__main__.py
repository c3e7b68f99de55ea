"""``python -m data_processing`` is ``dtnerf-process``."""

from data_processing.process_video import entrypoint

entrypoint()
