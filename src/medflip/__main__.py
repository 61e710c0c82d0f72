"""`python -m medflip ...` is the `medflip` command; so is `torchrun --nproc_per_node K -m medflip pretrain ...`."""

import sys

from medflip.cli import main

if __name__ == "__main__":
    sys.exit(main())
