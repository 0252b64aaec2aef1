#!/usr/bin/env python3
"""Download TartanAir zip files (spec cli.md 7.2, training.md 7.7).

Files are named ``<env>/<Easy|Hard>/<type>_<camera>.zip`` in the public bucket ``tartanair-v1`` (S3 API) and
saved as ``<out>/<env>_<level>_<type>_<camera>.zip``; existing files are never overwritten. Filters:
``--only-easy/--only-hard``, ``--rgb`` (image), ``--depth``, ``--seg``, ``--flow``, ``--only-left/--only-right/
--only-flow/--only-mask``. Endpoint and credentials: ``TARTANAIR_ENDPOINT_URL``, ``TARTANAIR_ACCESS_KEY``,
``TARTANAIR_SECRET_KEY`` (the public read-only pair of TartanAir's official download tool). Needs ``boto3``.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import List

ENVS = ["abandonedfactory", "abandonedfactory_night", "amusement", "carwelding", "endofworld", "gascola",
        "hospital", "japanesealley", "neighborhood", "ocean", "office", "office2", "oldtown", "seasidetown",
        "seasonsforest", "seasonsforest_winter", "soulcity", "westerndesert"]
BUCKET = "tartanair-v1"



class _OneLineParser(argparse.ArgumentParser):
    """Usage errors as one ``error: ...`` line (exit status 2), as every entry point of the project."""

    def error(self, message):
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")

def file_list(levels: List[str], types: List[str], cameras: List[str]) -> List[str]:
    """Bucket keys of the selected zips."""
    out = []
    for env in ENVS:
        for level in levels:
            for t in types:
                for cam in cameras:
                    if t == "flow" and cam not in ("flow", "mask"):
                        continue
                    if t != "flow" and cam in ("flow", "mask"):
                        continue
                    out.append(f"{env}/{level}/{t}_{cam}.zip")
    return out


def main(argv=None) -> int:
    p = _OneLineParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--output-dir", default="tartanair")
    for flag in ("rgb", "depth", "seg", "flow", "only-easy", "only-hard", "only-left", "only-right", "only-flow",
                 "only-mask", "dry-run"):
        p.add_argument(f"--{flag}", action="store_true")
    a = p.parse_args(argv)
    levels = ["Easy"] if a.only_easy else ["Hard"] if a.only_hard else ["Easy", "Hard"]
    types = [t for t, on in (("image", a.rgb), ("depth", a.depth), ("seg", a.seg), ("flow", a.flow)) if on]
    cameras = ["left"] if a.only_left else ["right"] if a.only_right else ["flow"] if a.only_flow else \
        ["mask"] if a.only_mask else ["left", "right", "flow", "mask"]
    if not types:
        print("error: choose at least one of --rgb --depth --seg --flow", file=sys.stderr)
        return 2
    keys = file_list(levels, types, cameras)
    os.makedirs(a.output_dir, exist_ok=True)
    if a.dry_run:
        print("\n".join(keys))
        return 0
    try:
        import boto3
    except ImportError:
        print("error: pip install boto3", file=sys.stderr)
        return 2
    try:
        s3 = boto3.client("s3", endpoint_url=os.environ["TARTANAIR_ENDPOINT_URL"],
                          aws_access_key_id=os.environ["TARTANAIR_ACCESS_KEY"],
                          aws_secret_access_key=os.environ["TARTANAIR_SECRET_KEY"])
    except KeyError as exc:
        print(f"error: set {exc.args[0]} (see the header of this script)", file=sys.stderr)
        return 2
    for key in keys:
        dest = os.path.join(a.output_dir, key.replace("/", "_"))
        if os.path.exists(dest):
            print(f"exists, skipped: {dest}")
            continue
        print(f"downloading {key}")
        s3.download_file(BUCKET, key, dest + ".part")
        os.replace(dest + ".part", dest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
