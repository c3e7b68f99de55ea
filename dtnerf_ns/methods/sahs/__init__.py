"""SAHS-NeRF: semantic-aware hyper-space deformable NeRF (Jin et al., Pattern Recognition Letters 2024)."""
