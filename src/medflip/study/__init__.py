"""The reproduction study (`medflip study`): a top-layer package that drives `medflip pretrain` and the
evaluation code over a plan of cells (method x seed x pre-training fraction), resumably.

plan.py      methods, settings (StudyConfig), cells, the exact pretrain command of each cell
cell.py      text-corpus split (held-out retrieval pool) and the evaluation of one cell (per-image outputs)
runner.py    run / resume / skip cells, side by side
stats.py     fast metrics, bootstrap over test images, the "better" rule
aggregate.py seed summaries and paired comparisons
report.py    docs/reproduction.md and figures.py the PNGs
"""
