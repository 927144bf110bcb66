"""Uni-Sign's pre-training entry point (stages 1 and 2): `python pre_training.py [flags]`, also under
`torchrun --nproc_per_node N pre_training.py ...` and `deepspeed --include localhost:0,1 pre_training.py ...`.
Every flag: `python pre_training.py --help`."""
import sys

from signfuse.cli import pre_training_main

if __name__ == "__main__":
    sys.exit(pre_training_main())
