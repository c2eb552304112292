"""The ``kustos`` command line: thin.

Each command parses its flags, builds a settings object, calls into a capability or the
harness and turns the result into output and an exit code. Errors of the ``KustosError``
tree become one line on stderr and the error's exit code; nothing deeper calls ``sys.exit``.
May import everything below it; nothing imports it.
"""
