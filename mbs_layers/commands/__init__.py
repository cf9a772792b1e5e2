"""Sub-commands of ``mbs``: one module per command (see ``mbs_layers.cli``)."""
