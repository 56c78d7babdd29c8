"""Errors a user can act on. Torch-free."""


class SmoledgeError(RuntimeError):
    """Bad input or a failed check at run time. The message names the problem and the fix."""
