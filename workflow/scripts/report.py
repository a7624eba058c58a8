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
    assemble(snakemake.input.fragments, snakemake.output[0], title=params["title"],
             meta={"dataset": params["dataset"], "config": dict(params["config"])}, sections=[stages])
