"""``python -m monst3r.datasets.synthetic --out DIR ...`` (options: :mod:`monst3r.datasets.synthetic.writer`)."""
import sys

from monst3r.datasets.synthetic.writer import main

sys.exit(main())
