"""Uni-Sign's entry point, kept: `python fine_tuning.py [flags]`, also under
`torchrun --nproc_per_node N fine_tuning.py ...` and `deepspeed --include localhost:0,1 fine_tuning.py ...`.
Every flag: `python fine_tuning.py --help`."""
import sys

from signfuse.cli import fine_tuning_main

if __name__ == "__main__":
    sys.exit(fine_tuning_main())
