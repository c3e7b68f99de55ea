"""Entry point for the ``dtnerf-data`` dataparser (its own module: nerfstudio's registry imports the dataparser
modules while discovering plugins, so the specification cannot live next to the dataparser)."""

from nerfstudio.plugins.registry_dataparser import DataParserSpecification

from dtnerf_ns.data.dtnerf_dataparser import DTNeRFDataParserConfig

dtnerf_dataparser = DataParserSpecification(
    config=DTNeRFDataParserConfig(),
    description="Talking-portrait dataset written by dtnerf-process (frames, audio windows, masks, headless images).",
)
