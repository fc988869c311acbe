"""`python -m headtune ...` works like `headtune ...` (and `torchrun -m headtune`, `accelerate launch -m headtune`)."""
from .cli import console

console()
