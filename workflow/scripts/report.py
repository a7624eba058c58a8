"""Assemble the section fragments into one self-contained report page, with which stages ran and why."""
from gzmorph.report import assemble
from gzmorph.smk import rule_context

with rule_context(snakemake) as (params, log):
    from gzmorph.report import html as R
    from gzmorph.stages import plan_rows

    rows = plan_rows(params["stages"])
    skipped = [r["stage"] for r in rows if r["runs"] == "no"]
    stages = R.Section("Stages", anchor="stages", order=5,
                       summary=f"{len(skipped)} of {len(rows)} did not run" if skipped else "every stage ran")
    stages.add(R.paragraph("What this run did after curation, and why a stage did not run (the config's "
                           "`stages`, and what the sources allow: labels, vote fractions, `represent.model`)."),
               R.table(rows, name="stages", index=False))
    from gzmorph.codedeps import package_hash

    config = dict(params["config"])
    # what identifies the run on a printed page too: the code version (the package's hash; the
    # release number stays the same across commits), seed and cut beside the dataset
    assemble(snakemake.input.fragments, snakemake.output[0], title=params["title"],
             meta={"dataset": params["dataset"], "code": package_hash(), "seed": config.get("seed"),
                   "cut": config.get("cut"), "config": config}, sections=[stages])
