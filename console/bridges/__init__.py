"""What the supervisor feeds from the runs' logs besides its clients: exports (TensorBoard,
W&B), notifications, progress figures.
"""
