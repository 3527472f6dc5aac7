"""Where runs execute: the Backend interface with its declared capabilities, local processes,
Slurm jobs.
"""
