"""Download the public GZ2 release (catalogues + images; md5-pinned, resumable, with mirrors)."""
from pathlib import Path

from gzmorph.smk import rule_context
from gzmorph.sources.gz2_download import download_gz2

with rule_context(snakemake) as (params, log):
    download_gz2(Path(snakemake.output[0]).parent)
