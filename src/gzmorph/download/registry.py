"""The Galaxy Zoo 2 remote files: where to get each one (URL and mirrors) and how to check it (md5)."""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class RemoteFile:
    """One remote file: where to get it and how to check it.

    ``urls`` are tried in order (primary first, then mirrors); every URL must
    serve the *same bytes* (the md5 decides).  ``md5`` is ``None`` where no
    checksum has been published; the download is then unverified (warning +
    ``<name>.md5`` sidecar).  ``size`` in bytes where known (progress bar and
    a cheap completeness check), else ``None``.
    """

    name: str
    urls: tuple[str, ...]
    md5: str | None = None
    size: int | None = None
    description: str = ""
    source: str = ""  # where the URL / md5 were found

    def __post_init__(self):
        if isinstance(self.urls, str):
            object.__setattr__(self, "urls", (self.urls,))
        else:
            object.__setattr__(self, "urls", tuple(self.urls))
        if not self.urls:
            raise ValueError(f"RemoteFile {self.name!r} has no URL")
        if self.md5 is not None and not re.fullmatch(r"[0-9a-f]{32}", self.md5):
            raise ValueError(f"RemoteFile {self.name!r}: {self.md5!r} is not an md5 hex digest")

    def with_urls(self, *urls: str) -> "RemoteFile":
        """Same file, other URLs (e.g. a local mirror)."""
        return RemoteFile(self.name, tuple(urls), self.md5, self.size, self.description, self.source)


_GD = "mwalmsley/galaxy-datasets galaxy_datasets/shared/gz2.py (commit 38f00ea)"
_ZENODO = "Zenodo record 3565489 (Willett et al., 'Galaxy Zoo 2: Images from Original Sample')"

#: The Galaxy Zoo 2 files.  The first three are what Zoobot's ``galaxy-datasets``
#: package downloads (its ``gz2()`` loader); md5s are the ones it pins.
GZ2_FILES: dict[str, RemoteFile] = {f.name: f for f in (
    RemoteFile(
        "gz2_train_catalog.parquet",
        ("https://dl.dropboxusercontent.com/s/vu77e3sh2s5c250/gz2_train_catalog.parquet",),
        md5="d5507a9332c75fd84a7f2562567da36b",
        description="Zoobot GZ2 train catalogue (80% of 209,293 'original' GZ2 galaxies, vote counts)",
        source=_GD,
    ),
    RemoteFile(
        "gz2_test_catalog.parquet",
        ("https://dl.dropboxusercontent.com/s/t8eh6f3oupndpl3/gz2_test_catalog.parquet",),
        md5="ac1fba88d0e8a95ee4f4eef79ea03063",
        description="Zoobot GZ2 test catalogue (the other 20%, train_test_split random_state=42)",
        source=_GD,
    ),
    RemoteFile(
        "images_gz2.tar.gz",
        ("https://dl.dropboxusercontent.com/s/5so7yof2afe761p/images_gz2.tar.gz",),
        md5="e3eab2fec57a6a60577236b9e0a6913d",
        description="Zoobot GZ2 JPEGs, 424x424, unpacks to images/<first 6 digits of dr7objid>/<dr7objid>.jpg",
        source=_GD,
    ),
    RemoteFile(
        "gz2_hart16.csv.gz",
        ("https://gz2hart.s3.amazonaws.com/gz2_hart16.csv.gz",
         "https://s3.amazonaws.com/gz2hart/gz2_hart16.csv.gz"),  # same bucket, path-style address
        md5=None,
        description="Hart et al. 2016 GZ2 Table 1 (normal-depth sample, new debiasing), CSV",
        source="data.galaxyzoo.org",
    ),
    RemoteFile(
        "images_gz2.zip",
        ("https://zenodo.org/records/3565489/files/images_gz2.zip?download=1",
         "https://zenodo.org/record/3565489/files/images_gz2.zip"),
        # md5 printed for the zip 'directly from Zenodo' in galaxy-datasets
        # notebooks/gz2_split.ipynb (commit 5f1e8eb); also pinned by its older gz2.py.
        md5="bc647032d31e50c798770cf4430525c7",
        description="GZ2 original-sample JPEGs named <asset_id>.jpg (243,434 images)",
        source=_ZENODO,
    ),
    RemoteFile(
        "gz2_filename_mapping.csv",
        ("https://zenodo.org/records/3565489/files/gz2_filename_mapping.csv?download=1",
         "https://zenodo.org/record/3565489/files/gz2_filename_mapping.csv"),
        md5=None,
        description="objid, sample, asset_id: maps Hart16 rows to images_gz2.zip file names",
        source=_ZENODO,
    ),
    RemoteFile(
        "zoo2MainSpecz.csv.gz",
        ("https://zooniverse-data.s3.amazonaws.com/galaxy-zoo-2/zoo2MainSpecz.csv.gz",
         "https://s3.amazonaws.com/zooniverse-data/galaxy-zoo-2/zoo2MainSpecz.csv.gz"),
        md5=None,
        description="Willett et al. 2013 GZ2 Table 5 (main sample with spectroscopic redshifts)",
        source="data.galaxyzoo.org",
    ),
)}
