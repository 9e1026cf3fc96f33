#!/usr/bin/env python
"""Same as `tbfast data synth`."""

import sys

import tbfast.cli

if __name__ == "__main__":
    sys.exit(tbfast.cli.main(["data", "synth", *sys.argv[1:]]))
