"""The model contract: what every stage after training agrees on.

Torch-free and at the base of the import graph (only ``protocol`` below it):
the layer graph (``graph``), model specs and the family registry (``spec``,
``zoo``), the integer model (``intmodel``), the weight blob (``blob``), the
map preprocessing and reject rule shared by training and the host
(``preprocess``, ``reject``), the typed reader of an export folder
(``export_dir``) and the board facts (``board``).
"""
