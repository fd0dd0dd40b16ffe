"""What the recipes share: where a TRL run keeps its files and how a grid's runs are collected (`runs`), and the
tables and figures of a grid (`analyze`). Importable as `recipes.common` with the checkout on PYTHONPATH (the
recipes' run scripts set it), as `cpu_harness` is."""
