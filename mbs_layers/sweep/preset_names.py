"""The packaged sweep presets' names (``presets/<name>.yaml``), in a module without torch so the
command line can list them in ``mbs --help`` cheaply."""

PACKAGED = ("smoke", "default", "full", "models", "kernels", "sparse24", "sparsenm")
