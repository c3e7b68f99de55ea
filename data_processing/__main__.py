"""``python -m data_processing`` is ``dtnerf-process``."""

from data_processing.process_video import entrypoint

if __name__ == "__main__":  # dtnerf-process's worker processes import this module again (spawn): only run here
    entrypoint()
