"""Thin wrapper: `python trainers/keye_sft.py --config trainers/configs/keye_sft_tiny.yaml` ==
`kwaiformers train keye-sft --config ...` (logic in `kwaiformers.trainers.keye_sft_recipe`)."""

import sys

from kwaiformers.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", "keye-sft", *sys.argv[1:]]))
