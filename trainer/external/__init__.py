"""Entry points that run other people's trainers (nnU-Net v2) under foldwatch's rules."""
