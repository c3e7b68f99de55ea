"""DT-NeRF's own building blocks: triplane hash encoding, audio-mouth-face align transformer, spatial fusion."""
