#!/usr/bin/env python
"""Same as `tbfast data prep`."""

import sys

import tbfast.cli

if __name__ == "__main__":
    sys.exit(tbfast.cli.main(["data", "prep", *sys.argv[1:]]))
