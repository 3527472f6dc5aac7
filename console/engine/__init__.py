"""The UI-free engine that one supervisor runs per experiment: the tick phases (reading logs,
judging exits, the watchdog, scheduling, launching, adoption) and the user's actions.
"""
