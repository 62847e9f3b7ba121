"""``python -m vgg``: the command line, ``vgg.ops.cli``."""
import sys

from .ops.cli import _cli

sys.exit(_cli())
