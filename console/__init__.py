"""foldwatch's console: engine, supervisor, watchdog, NVML, Textual app, headless mode.

Never imports torch, monai, nibabel or numpy, directly or indirectly (tests enforce it).
"""
