"""NVIDIA GPUs: NVML sampling, which GPU process is ours, and the slots runs may take."""
