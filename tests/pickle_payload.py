"""A pickle that runs code when loaded (``os.system("touch <marker>")``): the tests of the checkpoint readers check
that such files are refused and never run (the marker file must not appear)."""
import os


class PicklePayload:
    """Unpickling this object runs ``touch <marker>``."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))
