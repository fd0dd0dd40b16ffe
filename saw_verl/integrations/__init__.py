"""One subpackage per trainer, each the only code that imports that trainer: `verl`, `trl`, `openrlhf`.

Importing this package (or `saw_verl`) imports none of them.
"""
