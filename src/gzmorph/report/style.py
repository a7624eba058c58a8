"""Inline stylesheet of the report page (a module, so wheels ship it without package-data)."""

CSS = r"""
/* gzmorph report: inline stylesheet (no web fonts, no external resources) */
:root {
  --gz-fg: #1d2330;
  --gz-muted: #5d6678;
  --gz-bg: #f5f6f9;
  --gz-card: #ffffff;
  --gz-line: #e1e4ec;
  --gz-accent: #3b5bdb;
  --gz-accent-soft: #edf1ff;
  --gz-stripe: #f7f8fb;
  --gz-warn: #b35c00;
  --gz-warn-soft: #fff4e5;
  --gz-radius: 10px;
  --gz-mono: ui-monospace, "SFMono-Regular", "DejaVu Sans Mono", Menlo, Consolas, monospace;
}
* { box-sizing: border-box; }
html { scroll-behavior: smooth; }
body {
  margin: 0; color: var(--gz-fg); background: var(--gz-bg);
  font: 15px/1.55 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", "DejaVu Sans", Arial, sans-serif;
  -webkit-font-smoothing: antialiased;
}
a { color: var(--gz-accent); text-decoration: none; }
a:hover { text-decoration: underline; }
code { font-family: var(--gz-mono); font-size: 0.9em; background: #eef0f5; padding: 0.05em 0.35em; border-radius: 4px; }

/* header */
.gz-header { background: linear-gradient(120deg, #1b2440 0%, #2c3e77 60%, #3b5bdb 100%); color: #fff; }
.gz-header-inner { max-width: 1320px; margin: 0 auto; padding: 28px 28px 22px; }
.gz-header h1 { margin: 0; font-size: 28px; font-weight: 650; letter-spacing: -0.01em; }
.gz-subtitle { font-size: 17px; opacity: 0.85; margin-top: 2px; }
.gz-facts { display: flex; flex-wrap: wrap; gap: 8px 10px; margin-top: 14px; }
.gz-fact { background: rgba(255,255,255,0.12); border: 1px solid rgba(255,255,255,0.18); border-radius: 999px; padding: 3px 12px; font-size: 13px; }
.gz-fact-k { opacity: 0.75; margin-right: 6px; }
.gz-fact-v { font-weight: 600; }
.gz-config { margin-top: 14px; color: var(--gz-fg); }
.gz-config > summary { color: #fff; }
.gz-config .gz-table-wrap { background: var(--gz-card); border-radius: 8px; margin-top: 8px; max-height: 360px; overflow: auto; }

/* layout: contents on the left on wide screens, on top on narrow ones */
.gz-layout { max-width: 1320px; margin: 0 auto; padding: 24px 28px; display: grid; grid-template-columns: 230px minmax(0, 1fr); gap: 28px; align-items: start; }
.gz-toc { position: sticky; top: 16px; background: var(--gz-card); border: 1px solid var(--gz-line); border-radius: var(--gz-radius); padding: 14px 14px 10px; font-size: 14px; }
.gz-toc-title { font-size: 12px; text-transform: uppercase; letter-spacing: 0.08em; color: var(--gz-muted); margin-bottom: 6px; }
.gz-toc ol { list-style: none; margin: 0; padding: 0; }
.gz-toc li { margin: 0 0 6px; }
.gz-toc a { display: flex; gap: 8px; align-items: baseline; color: var(--gz-fg); }
.gz-toc a:hover { color: var(--gz-accent); text-decoration: none; }
.gz-toc-n { color: var(--gz-accent); font-weight: 600; font-variant-numeric: tabular-nums; min-width: 1.2em; }
.gz-toc-summary { display: block; color: var(--gz-muted); font-size: 12px; margin-left: 1.9em; line-height: 1.35; }
.gz-main { min-width: 0; }
@media (max-width: 900px) {
  .gz-layout { grid-template-columns: 1fr; padding: 16px; }
  .gz-toc { position: static; }
  .gz-header-inner { padding: 22px 16px 18px; }
  .gz-section { padding: 16px 14px 12px; }
  .gz-dl { grid-template-columns: 1fr; gap: 0 0; }
  .gz-dl dd { margin-bottom: 6px; }
}

/* sections */
.gz-section { background: var(--gz-card); border: 1px solid var(--gz-line); border-radius: var(--gz-radius); padding: 22px 26px 18px; margin-bottom: 24px; box-shadow: 0 1px 2px rgba(20, 30, 60, 0.04); }
.gz-section h2 { margin: 0 0 12px; font-size: 22px; font-weight: 650; letter-spacing: -0.01em; }
.gz-section h2 a { color: inherit; }
.gz-section h3 { margin: 26px 0 10px; font-size: 16px; font-weight: 650; padding-bottom: 4px; border-bottom: 1px solid var(--gz-line); }
.gz-section p { margin: 0 0 10px; max-width: 80ch; }
.gz-muted { color: var(--gz-muted); }
.gz-small { font-size: 12.5px; }
.gz-caption, figcaption, caption { color: var(--gz-muted); font-size: 13px; line-height: 1.45; }
.gz-note { border-left: 4px solid var(--gz-accent); background: var(--gz-accent-soft); padding: 9px 14px; border-radius: 6px; margin: 10px 0 14px; max-width: 90ch; }
.gz-note.gz-warn { border-left-color: var(--gz-warn); background: var(--gz-warn-soft); }
.gz-dl { display: grid; grid-template-columns: max-content 1fr; gap: 6px 18px; margin: 6px 0 12px; }
.gz-dl dt { font-weight: 600; }
.gz-dl dd { margin: 0; }
.gz-details { margin: 10px 0; }
.gz-details > summary { cursor: pointer; font-weight: 600; font-size: 14px; }

/* headline numbers */
.gz-metrics { display: grid; grid-template-columns: repeat(auto-fill, minmax(140px, 1fr)); gap: 10px; margin: 6px 0 8px; }
.gz-metric { background: var(--gz-stripe); border: 1px solid var(--gz-line); border-radius: 8px; padding: 10px 12px; }
.gz-metric-value { font-size: 22px; font-weight: 650; font-variant-numeric: tabular-nums; line-height: 1.2; overflow-wrap: anywhere; }
.gz-metric-name { color: var(--gz-muted); font-size: 12.5px; margin-top: 2px; }

/* tables */
.gz-table-wrap { overflow-x: auto; margin: 6px 0 14px; }
.gz-table { border-collapse: collapse; font-size: 13.5px; font-variant-numeric: tabular-nums; min-width: 240px; }
.gz-table caption { caption-side: bottom; text-align: left; padding-top: 6px; }
.gz-table th, .gz-table td { padding: 5px 12px; text-align: left; border-bottom: 1px solid var(--gz-line); white-space: nowrap; }
.gz-table thead th { background: #eef1f7; font-weight: 600; border-bottom: 2px solid #cfd5e3; position: sticky; top: 0; }
.gz-table tbody tr:nth-child(even) { background: var(--gz-stripe); }
.gz-table tbody tr:hover { background: var(--gz-accent-soft); }
.gz-table tbody th { font-weight: 600; }
.gz-table .num { text-align: right; }
.gz-table tr.gz-total td, .gz-table tr.gz-total th { font-weight: 650; border-top: 2px solid #cfd5e3; }
.gz-kv td { white-space: normal; overflow-wrap: anywhere; }
.gz-kv th { font-family: var(--gz-mono); font-weight: 500; font-size: 12.5px; }

/* figures */
figure { margin: 10px 0 18px; }
.gz-figure img { display: block; max-width: 100%; height: auto; border-radius: 6px; }
.gz-figure figcaption, .gz-grid-figure figcaption { margin-top: 6px; max-width: 90ch; }
.gz-columns { display: flex; flex-wrap: wrap; gap: 10px 28px; align-items: flex-start; }
.gz-col { flex: 1 1 320px; min-width: 0; }

/* image grids */
.gz-grid-label { font-weight: 600; font-size: 14px; margin: 0 0 6px; }
.gz-grid {
  display: grid; gap: 8px;
  grid-template-columns: repeat(auto-fill, minmax(min(var(--gz-cell), 100%), 1fr));
  max-width: calc(var(--gz-ncols) * (var(--gz-cell) + 16px));
}
.gz-cell { background: #0b0d14; border-radius: 6px; overflow: hidden; }
.gz-cell img { display: block; width: 100%; height: auto; aspect-ratio: auto; }
.gz-cell img.gz-pixelated { image-rendering: pixelated; image-rendering: crisp-edges; image-rendering: pixelated; }
.gz-class-grid { display: grid; gap: 6px; align-items: center; overflow-x: auto; max-width: 100%; }
.gz-class-name { font-family: var(--gz-mono); font-size: 12px; text-align: right; padding-right: 6px; white-space: nowrap; }
.gz-cell-title { color: #d8dceb; font-family: var(--gz-mono); font-size: 11px; line-height: 1.3; padding: 3px 6px 4px; text-align: center; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }

.gz-footer { max-width: 1320px; margin: 0 auto; padding: 8px 28px 36px; color: var(--gz-muted); font-size: 12.5px; }

.gz-print-only { display: none; }

@media print {
  body { background: #fff; }
  .gz-config { display: none; }
  .gz-print-only { display: block; }
  .gz-toc { display: none; }
  .gz-layout { display: block; }
  .gz-section { break-inside: avoid-page; box-shadow: none; }
}
"""
