"""MonST3R rebuilt: geometry of dynamic scenes from video.

Data flow (one direction): frames -> views (``monst3r.utils.image``) -> pairs (``monst3r.image_pairs``)
-> predictions (``monst3r.inference``) -> scene (``monst3r.cloud_opt``) -> result (``monst3r.result``)
-> writers (``monst3r.io``, ``monst3r.viz``).
"""
from monst3r.errors import Monst3rInputError

__all__ = ["Monst3rInputError"]
__version__ = "0.1.0"
