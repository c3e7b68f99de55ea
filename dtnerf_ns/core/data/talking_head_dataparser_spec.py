"""Entry points for the talking-head dataparser (its own module: nerfstudio's registry imports the dataparser modules
while discovering plugins, so the specification cannot live next to the dataparser).

``talking-head-data`` is its name; ``dtnerf-data`` is kept as an alias for configs and scripts written before the
second method existed.
"""

from nerfstudio.plugins.registry_dataparser import DataParserSpecification

from dtnerf_ns.core.data.talking_head_dataparser import TalkingHeadDataParserConfig

_DESCRIPTION = "Talking-portrait dataset written by dtnerf-process (frames, audio windows, masks, semantics, poses)."
talking_head_dataparser = DataParserSpecification(config=TalkingHeadDataParserConfig(), description=_DESCRIPTION)
dtnerf_dataparser = DataParserSpecification(
    config=TalkingHeadDataParserConfig(), description=_DESCRIPTION + " Alias of talking-head-data."
)
