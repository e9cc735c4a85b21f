"""``python -m sparseclip ...`` (e.g. under ``torchrun -m sparseclip train ...``)."""

import sys

from .cli import main

sys.exit(main())
