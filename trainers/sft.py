"""Thin wrapper: `python trainers/sft.py --config trainers/configs/<file>.yaml` ==
`kwaiformers train sft --config ...` (logic in `kwaiformers.trainers.sft_recipe`)."""

import sys

from kwaiformers.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", "sft", *sys.argv[1:]]))
