"""`python -m headtune ...` works like `headtune ...` (and `torchrun -m headtune`, `accelerate launch -m headtune`)."""
import sys

from .cli import main

sys.exit(main())
