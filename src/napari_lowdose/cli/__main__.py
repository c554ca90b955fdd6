"""``python -m napari_lowdose.cli`` (and ``torchrun -m napari_lowdose.cli train …``)."""

import sys

from . import main

sys.exit(main())
