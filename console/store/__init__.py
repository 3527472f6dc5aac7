"""What the engine keeps on disk and reads back: the state file, locks and claims, log tails,
the results disk's free space, fault injection for the crash tests.
"""
