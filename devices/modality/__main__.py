"""`python -m devices.modality`: the modality simulator without the `telemed-sim` front end."""

from __future__ import annotations

import argparse
import sys

from devices.modality.cli import configure_parser, main

if __name__ == "__main__":
    parser = configure_parser(argparse.ArgumentParser(prog="python -m devices.modality", description=__doc__))
    sys.exit(main(parser.parse_args()))
