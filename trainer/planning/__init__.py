"""Dataset fingerprint, per-configuration plans (nnU-Net's rules), preprocessing into the cache and reading it back."""
