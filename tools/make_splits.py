#!/usr/bin/env python
"""Same as `tbfast data splits`."""

import sys

import tbfast.cli

if __name__ == "__main__":
    sys.exit(tbfast.cli.main(["data", "splits", *sys.argv[1:]]))
