"""One fold's training: loop, batches and patch sampling, augmentation, loss, network, checkpoints."""
