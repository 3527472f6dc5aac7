"""Reading datasets (nnU-Net raw, MSD datalists), NIfTI geometry, label maps, dataset checks, demo data, splits."""
