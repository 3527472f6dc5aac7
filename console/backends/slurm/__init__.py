"""The Slurm backend (docs/slurm.md): sbatch script, Slurm queries, the Backend itself."""
