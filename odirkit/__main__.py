"""python -m odirkit: the same as the odirkit command."""

from odirkit.cli import main

main()
