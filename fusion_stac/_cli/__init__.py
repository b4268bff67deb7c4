"""The commands of ``fusion-stac`` (see :mod:`fusion_stac.cli`), one module per theme.

Each module registers its commands with :func:`fusion_stac.cli.command` when imported, and imports
heavy libraries (xarray, rasterio, matplotlib, the emulator) inside the handlers, so that
``fusion-stac --help`` starts fast.
"""
