"""Pictures: progress plots, prediction previews, drawn off the training hot path."""
