"""Video -> talking-portrait dataset (``dtnerf-process``). See ``dataset_layout`` for what is written."""
