"""`python -m ovmllm ...` (what `torchrun -m ovmllm train ...` runs on every rank)."""

import sys

from ovmllm.cli import main

sys.exit(main())
