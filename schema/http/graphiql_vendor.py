"""Fetch GraphiQL's browser files from the npm registry into schema/graphiql/vendor/.

The server serves GraphiQL from these files so the page works with no internet. They are the
official packages' own builds (the UMD bundles Strawberry's page loads from a CDN), copied as
they are, with each package's licence and package.json beside them; manifest.json records
every file's package, version, source path and SHA-256 (and the tarball's npm integrity).

    .venv/bin/python -m lookalike.schema.http.graphiql_vendor          # fetch, rewrite the folder
    .venv/bin/python -m lookalike.schema.http.graphiql_vendor --check  # fetch and compare

To update GraphiQL, change a version in PACKAGES, run the script, open /graphql in a browser
and run tests/schema/http/test_graphiql_browser.py. Needs ``npm`` (it runs ``npm pack``).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

VENDOR = (
    Path(__file__).resolve().parents[1] / "graphiql" / "vendor"
)  # the checkout, not the install

# name -> (version, files taken from the package). The versions are the ones Strawberry's
# GraphiQL page names; graphiql-explorer is fetched only for the licence of the code
# @graphiql/plugin-explorer bundles (its own package ships no LICENSE file).
PACKAGES: dict[str, tuple[str, tuple[str, ...]]] = {
    "react": ("18.2.0", ("umd/react.production.min.js", "LICENSE", "package.json")),
    "react-dom": ("18.2.0", ("umd/react-dom.production.min.js", "LICENSE", "package.json")),
    "graphiql": ("3.8.3", ("graphiql.min.js", "graphiql.min.css", "LICENSE", "package.json")),
    "@graphiql/plugin-explorer": ("1.0.2", ("dist/index.umd.js", "dist/style.css", "package.json")),
    "graphiql-explorer": ("0.9.0", ("LICENSE", "package.json")),
}


def folder_name(name: str, version: str) -> str:
    return f"{name.lstrip('@').replace('/', '-')}-{version}"


def pack(name: str, version: str, into: Path) -> tuple[Path, dict[str, Any]]:
    """``npm pack`` one exact version; npm checks the tarball against the registry's
    integrity before it writes it."""
    found = subprocess.run(
        ["npm", "pack", "--json", "--pack-destination", str(into), f"{name}@{version}"],
        check=True,
        capture_output=True,
        text=True,
    )
    (info,) = json.loads(found.stdout)
    return into / info["filename"], info


def fetch(into: Path) -> dict[str, Any]:
    """Unpack the pinned files into ``into`` and return the manifest describing them."""
    packages = []
    with tempfile.TemporaryDirectory() as scratch:
        for name, (version, wanted) in PACKAGES.items():
            tarball, info = pack(name, version, Path(scratch))
            folder = into / folder_name(name, version)
            folder.mkdir(parents=True)
            files = {}
            with tarfile.open(tarball) as archive:
                for source in wanted:
                    member = archive.extractfile(f"package/{source}")
                    if member is None:
                        raise SystemExit(f"{name}@{version} has no {source}")
                    body = member.read()
                    target = folder / Path(source).name
                    target.write_bytes(body)
                    files[target.name] = {
                        "source": source,
                        "bytes": len(body),
                        "sha256": hashlib.sha256(body).hexdigest(),
                        # the value of an integrity="" attribute (Subresource Integrity)
                        "sri": "sha384-" + base64.b64encode(hashlib.sha384(body).digest()).decode(),
                    }
            licence = json.loads((folder / "package.json").read_text())["license"]
            packages.append(
                {
                    "name": name,
                    "version": version,
                    "license": licence,
                    "folder": folder.name,
                    "tarball_integrity": info["integrity"],
                    "files": files,
                }
            )
    return {"fetched_with": "npm pack", "packages": packages}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--check", action="store_true", help="compare with the checked-in files, change nothing"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        fresh = Path(work) / "vendor"
        manifest = fetch(fresh)
        (fresh / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        if args.check:
            differ = [
                str(path.relative_to(fresh))
                for path in sorted(fresh.rglob("*"))
                if path.is_file()
                and (
                    not (VENDOR / path.relative_to(fresh)).is_file()
                    or (VENDOR / path.relative_to(fresh)).read_bytes() != path.read_bytes()
                )
            ]
            for name in differ:
                print(f"differs from the registry: {name}", file=sys.stderr)
            print("vendor/ matches the npm registry" if not differ else f"{len(differ)} differ")
            return 1 if differ else 0
        if VENDOR.exists():
            shutil.rmtree(VENDOR)
        shutil.copytree(fresh, VENDOR)
    for package in manifest["packages"]:
        print(f"{package['name']}@{package['version']}: {', '.join(package['files'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
