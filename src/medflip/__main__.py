"""`python -m medflip ...` is the `medflip` command; so is `torchrun --nproc_per_node K -m medflip pretrain ...`."""

import os
import sys

from medflip.cli import main

if __name__ == "__main__":
    if "TORCHELASTIC_RUN_ID" in os.environ:  # under torchrun: a rank's traceback goes into torchrun's summary
        from torch.distributed.elastic.multiprocessing.errors import record

        main = record(main)
    sys.exit(main())
