"""`python -m framecast.train ...`: `framecast train` with the same flags, the entry point for
torchrun (`torchrun --nproc-per-node N -m framecast.train --preset default --out runs/x`)."""

import sys

from framecast.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
