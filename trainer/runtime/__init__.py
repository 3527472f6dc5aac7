"""The process around every trainer command: event log, stop signals, device and threads, worker pool."""
