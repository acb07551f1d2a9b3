"""The tools built on gradrev: the CLI, `gradrev check`, the benchmark and the demo.

They use the library; the library (`reverse`, the backends, the layers, schedules, testing, compat)
never imports them.
"""
