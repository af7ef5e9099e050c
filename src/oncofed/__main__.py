"""``python -m oncofed`` runs the command line."""

from oncofed.cli.app import main

main()
