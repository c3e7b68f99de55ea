"""The talking-head core every method shares: data (dataparser, uint8 frame cache, datamanager), per-frame
conditioning, compositing, the model interface that renders final frames, the pipeline and shared field components."""
