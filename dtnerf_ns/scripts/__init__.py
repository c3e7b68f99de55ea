"""Command-line tools: ``dtnerf-render`` (talking video from new audio) and ``dtnerf-eval`` (metrics of the papers)."""
